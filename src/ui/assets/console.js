// herald console: each <time datetime> also in the viewer's own zone,
// on load and whenever htmx or the event stream swaps content in.
(function () {
  function localise(root) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) { return; }
      t.setAttribute("data-local", "1");
      var s = document.createElement("span");
      s.className = "viewer-time";
      s.textContent = " (your time: " + d.toLocaleString([], { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short" }) + ")";
      t.after(s);
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    localise(document);
    new MutationObserver(function () { localise(document); })
      .observe(document.body, { childList: true, subtree: true });
  });
})();
