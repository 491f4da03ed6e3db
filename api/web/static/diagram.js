// Draw the BPMN diagram with bpmn-js and mark the active elements and the path taken.
(function () {
  var box = document.getElementById("diagram");
  var source = document.getElementById("diagram-data");
  if (!box || !source) return;
  var data = JSON.parse(source.textContent);
  if (typeof BpmnJS === "undefined") {
    box.textContent = "bpmn-js is not installed (run npm install)";
    return;
  }
  var viewer = new BpmnJS({ container: box });
  viewer.importXML(data.bpmn).then(function () {
    var canvas = viewer.get("canvas");
    var registry = viewer.get("elementRegistry");
    var shapes = registry.filter(function (e) { return !e.waypoints && e.type !== "label"; });
    if (shapes.length <= 1) {
      box.classList.add("empty");
      box.textContent = box.getAttribute("data-empty");
      return;
    }
    var done = new Set(data.completed || []);
    var active = new Set(data.active || []);
    done.forEach(function (id) { if (registry.get(id)) canvas.addMarker(id, "cf-done"); });
    active.forEach(function (id) { if (registry.get(id)) canvas.addMarker(id, "cf-active"); });
    // A flow is on the path when it joins two visited elements (gateways in between count as visited).
    var visited = function (el) {
      return el && (done.has(el.id) || active.has(el.id));
    };
    var changed = true;
    var gateways = new Set();
    while (changed) {
      changed = false;
      registry.filter(function (e) { return /Gateway$/.test(e.type) && !gateways.has(e.id); }).forEach(function (gw) {
        var into = (gw.incoming || []).some(function (c) { return visited(c.source) || gateways.has(c.source.id); });
        var out = (gw.outgoing || []).some(function (c) { return visited(c.target) || gateways.has(c.target.id); });
        if (into && out) { gateways.add(gw.id); changed = true; }
      });
    }
    gateways.forEach(function (id) { canvas.addMarker(id, "cf-done"); done.add(id); });
    registry.filter(function (e) { return !!e.waypoints; }).forEach(function (c) {
      if (c.source && c.target && visited(c.source) && visited(c.target)) canvas.addMarker(c.id, "cf-path");
    });
    canvas.zoom("fit-viewport", "auto");
    box.setAttribute("data-ready", "true");
  }).catch(function (err) {
    box.classList.add("empty");
    box.textContent = box.getAttribute("data-empty") + " (" + err.message + ")";
  });
  window.addEventListener("resize", function () {
    try { viewer.get("canvas").zoom("fit-viewport", "auto"); } catch (e) { /* not drawn */ }
  });
})();
