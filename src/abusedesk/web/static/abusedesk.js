// The only script: deadlines count down live, and "select all" ticks a table's boxes.
// Every page works without it; the server already wrote the countdown's text.
"use strict";

function words(ms) {
  const minutes = Math.floor(Math.abs(ms) / 60000);
  const days = Math.floor(minutes / 1440);
  const hours = Math.floor((minutes % 1440) / 60);
  const mins = minutes % 60;
  const parts = [];
  if (days) parts.push(days + (days === 1 ? " day" : " days"));
  if (hours) parts.push(hours + (hours === 1 ? " hour" : " hours"));
  if (!days && (mins || !parts.length)) parts.push(mins + (mins === 1 ? " minute" : " minutes"));
  return parts.slice(0, 2).join(" ");
}

function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll("time[data-countdown]")) {
    const left = Date.parse(el.getAttribute("datetime")) - now;
    if (Number.isNaN(left)) continue;
    el.textContent = Math.abs(left) < 60000 ? "now" : left > 0 ? "in " + words(left) : words(left) + " ago";
    el.classList.toggle("overdue", left <= 0);
    el.classList.toggle("soon", left > 0 && left < 4 * 3600 * 1000);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  tick();
  setInterval(tick, 30000);
  for (const box of document.querySelectorAll("input[data-select-all]")) {
    box.addEventListener("change", () => {
      const table = box.closest("table");
      for (const row of table.querySelectorAll("input[name=case_id]")) row.checked = box.checked;
    });
  }
});
