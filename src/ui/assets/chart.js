// herald console: the live page's chart of attempts by outcome, drawn with
// uPlot from the data the event stream swaps into #chart-data (no reload).
// Colours from the Okabe-Ito palette (safe for colour-blind viewers); the
// legend names every series, and the counts are also in the page's table.
(function () {
  var COLOURS = {
    answered: "#009E73", busy: "#E69F00", no_answer: "#0072B2", rejected: "#D55E00",
    invalid_destination: "#CC79A7", temporary_failure: "#56B4E9", trunk_error: "#000000",
    interrupted: "#8C8C8C", agent_unavailable: "#994F00"
  };
  var plot = null, labels = "";

  function draw() {
    var box = document.getElementById("chart");
    var src = document.getElementById("chart-data");
    if (!box || !src || typeof uPlot === "undefined") { return; }
    var d;
    try { d = JSON.parse(src.textContent); } catch (e) { return; }
    var data = [d.t].concat(d.series.map(function (s) { return s.counts; }));
    var total = 0;
    d.series.forEach(function (s) { s.counts.forEach(function (n) { total += n; }); });
    box.dataset.total = String(total);
    box.dataset.updates = String(Number(box.dataset.updates || 0) + 1);
    document.getElementById("chart-empty").hidden = d.series.length > 0;
    var names = d.series.map(function (s) { return s.outcome; }).join(",");
    if (plot && names === labels) { plot.setData(data); return; }
    if (plot) { plot.destroy(); }
    labels = names;
    plot = new uPlot({
      width: Math.max(280, Math.min(box.clientWidth || 720, 900)),
      height: 240,
      scales: { x: { time: true } },
      axes: [{}, { label: "calls per " + d.step_s + " s" }],
      series: [{ label: "Time" }].concat(d.series.map(function (s) {
        var c = COLOURS[s.outcome] || "#4a4a4a";
        return { label: s.outcome, stroke: c, width: 2, points: { show: false } };
      }))
    }, data, box);
  }

  document.addEventListener("htmx:sseMessage", function (e) {
    if (e.target && e.target.id === "chart-data") { draw(); }
  });
  document.addEventListener("DOMContentLoaded", draw);
})();
