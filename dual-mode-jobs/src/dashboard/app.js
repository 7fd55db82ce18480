// The dashboard's only script, and the pages work without it: it asks before actions marked
// data-confirm, and reloads pages marked data-live every 5 s while "live" is ticked.
"use strict";
document.addEventListener("submit", (e) => {
  const question = e.target.dataset && e.target.dataset.confirm;
  if (question && !window.confirm(question)) e.preventDefault();
});
const live = document.getElementById("live");
if (live) {
  live.checked = localStorage.getItem("dm-live") === "1";
  live.addEventListener("change", () => localStorage.setItem("dm-live", live.checked ? "1" : "0"));
  setInterval(() => { if (live.checked) location.reload(); }, 5000);
}
