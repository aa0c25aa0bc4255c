"""Mailing digests to subscribers: compose, sign unsubscribe links, send over SMTP, once each.

`service.send_due` is what the pipeline calls after a digest period's files
are written; `commands.register` adds the mail commands to the CLI.
"""
