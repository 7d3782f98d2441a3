// Keyboard shortcuts for the review queue: j/k move, a approve, r reject, e edit, x select, Esc leaves a field.
// Served from this app (Content-Security-Policy: script-src 'self'); no other script runs on these pages.
(function () {
  "use strict";
  function cards() { return Array.prototype.slice.call(document.querySelectorAll("article.msg")); }
  function current() { return document.querySelector("article.msg.current"); }
  function select(card) {
    if (!card) { return; }
    var old = current();
    if (old) { old.classList.remove("current"); }
    card.classList.add("current");
    card.focus({ preventScroll: true });
    card.scrollIntoView({ block: "nearest" });
  }
  function move(step) {
    var all = cards();
    if (!all.length) { return; }
    var i = all.indexOf(current());
    select(all[Math.max(0, Math.min(all.length - 1, i < 0 ? 0 : i + step))]);
  }
  function typing(el) {
    return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable);
  }
  document.addEventListener("DOMContentLoaded", function () {
    // images that cannot load (offline shop) are hidden rather than shown broken
    Array.prototype.forEach.call(document.querySelectorAll(".items img"), function (img) {
      if (img.complete && img.naturalWidth === 0) { img.style.visibility = "hidden"; }
      img.addEventListener("error", function () { img.style.visibility = "hidden"; });
    });
    var target = location.hash && document.querySelector(location.hash.replace(/[^#\w-]/g, ""));
    if (target && target.classList.contains("msg")) { select(target); }
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    if (ev.key === "Escape" && typing(document.activeElement)) {
      document.activeElement.blur();
      var c = current();
      if (c) { c.focus({ preventScroll: true }); }
      return;
    }
    if (typing(ev.target)) { return; }
    var card = current();
    switch (ev.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "a":
        if (card) {
          var button = card.querySelector("form.approve button");
          if (button && !button.disabled) { button.click(); }
        }
        break;
      case "r":
        if (card) { card.querySelector("input.reason").focus(); }
        break;
      case "e":
        if (card) {
          var details = card.querySelector("details.edit");
          details.open = true;
          card.querySelector("input.edit-title").focus();
        }
        break;
      case "x":
        if (card) { var box = card.querySelector("input.select"); box.checked = !box.checked; }
        break;
      default: return;
    }
    ev.preventDefault();
  });
}());
