// Live updates for the dashboard, without a build step or a framework.
// The Now list is re-fetched every data-poll seconds; stories and outlets that
// were not there before are highlighted. The server renders (and escapes) the
// HTML; this script only swaps it in.
"use strict";

function outletsOf(element) {
  return new Set((element.dataset.outlets || "").split("|").filter(Boolean));
}

function snapshot(list) {
  const known = new Map();
  for (const story of list.querySelectorAll("[data-story]")) {
    known.set(story.dataset.story, outletsOf(story));
  }
  return known;
}

function markNew(list, before) {
  let fresh = 0;
  for (const story of list.querySelectorAll("[data-story]")) {
    const previous = before.get(story.dataset.story);
    if (!previous) {
      story.classList.add("is-new");
      fresh += 1;
      continue;
    }
    for (const chip of story.querySelectorAll("[data-outlet]")) {
      if (!previous.has(chip.dataset.outlet)) {
        chip.classList.add("is-new");
        story.classList.add("is-new");
        fresh += 1;
      }
    }
  }
  return fresh;
}

function startPolling(list) {
  const seconds = Math.max(2, Number(document.body.dataset.poll) || 20);
  const status = document.getElementById("live-status");
  async function poll() {
    try {
      const response = await fetch(list.dataset.src, { credentials: "same-origin" });
      if (!response.ok) throw new Error(String(response.status));
      const before = snapshot(list);
      const open = new Set([...list.querySelectorAll("details[open]")].map(
        (d) => d.closest("[data-story]").dataset.story));
      list.innerHTML = await response.text();
      for (const story of list.querySelectorAll("[data-story]")) {
        if (open.has(story.dataset.story)) story.querySelector("details").open = true;
      }
      const fresh = markNew(list, before);
      if (status) {
        status.classList.remove("stale");
        const time = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
        status.textContent = `Live · updated ${time}` + (fresh ? ` · ${fresh} new` : "");
      }
    } catch (error) {
      if (status) {
        status.classList.add("stale");
        status.textContent = "Not updating (offline or logged out?)";
      }
    }
  }
  window.setInterval(poll, seconds * 1000);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });
  list.addEventListener("refresh", poll);
}

document.addEventListener("DOMContentLoaded", () => {
  const list = document.getElementById("now-list");
  if (list) startPolling(list);
  for (const select of document.querySelectorAll("select.autosubmit")) {
    select.addEventListener("change", () => select.form.submit());
  }
});
