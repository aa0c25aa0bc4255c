# What other compiled modules call of aggregator/cluster_tokens.pyx directly (C calls, no boxing).

cdef double pair_overlap(
    tuple a_title, tuple a_tokens, bytes a_levels, double a_mass,
    tuple b_title, tuple b_tokens, bytes b_levels, double b_mass,
    int steps,
) except? -1.0
