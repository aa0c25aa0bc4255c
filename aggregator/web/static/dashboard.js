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
    // From the story's full outlet list: a wide story shows only some as chips.
    const joined = [...outletsOf(story)].filter((outlet) => !previous.has(outlet));
    if (!joined.length) continue;
    story.classList.add("is-new");
    fresh += joined.length;
    for (const chip of story.querySelectorAll("[data-outlet]")) {
      if (joined.includes(chip.dataset.outlet)) chip.classList.add("is-new");
    }
  }
  return fresh;
}

// The time as the server's pages show it: 24-hour, in the dashboard's time zone
// (the browser's own zone and 12-hour clock would disagree with the footer).
function clockTime(moment) {
  const options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  try {
    return moment.toLocaleTimeString("en-GB", { ...options, timeZone: document.body.dataset.zone });
  } catch (error) {
    return moment.toLocaleTimeString("en-GB", options);
  }
}

function startPolling(list) {
  const seconds = Math.max(2, Number(document.body.dataset.poll) || 20);
  const status = document.getElementById("live-status");
  async function poll() {
    try {
      const response = await fetch(list.dataset.src, { credentials: "same-origin" });
      // The session ended (logout elsewhere, password changed): reloading the page
      // leads to the login form, which comes back here afterwards.
      if (response.status === 401) {
        window.location.reload();
        return;
      }
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
        const time = clockTime(new Date());
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
