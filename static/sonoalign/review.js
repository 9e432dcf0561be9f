// Review pages: keyboard navigation and decisions, layer toggles, and a small outline editor for the
// consensus region. Every decision is a plain form post (or an htmx post from the queue) to the one
// resolve endpoint; nothing here models the data beyond what is on screen.
(function () {
  "use strict";

  function typing(event) {
    var t = event.target;
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
  }

  function helpToggle() {
    var help = document.getElementById("review-help");
    if (!help) return;
    if (help.open) help.close(); else help.showModal();
  }
  var helpButton = document.getElementById("review-help-open");
  if (helpButton) helpButton.addEventListener("click", helpToggle);

  // ------------------------------------------------------------------------------------------- queue
  function queueRows() { return Array.prototype.slice.call(document.querySelectorAll("#review-table .review-row")); }

  function select(row) {
    queueRows().forEach(function (r) { r.classList.toggle("selected", r === row); });
    if (row) { row.scrollIntoView({ block: "nearest" }); }
  }

  function selectedRow() { return document.querySelector("#review-table .review-row.selected"); }

  function queueDecide(row, action, side) {
    var table = document.getElementById("review-table");
    var values = { action: action, side: side || "", from: "queue" };
    new URLSearchParams(table.dataset.query || "").forEach(function (v, k) { values[k] = v; });
    var index = queueRows().indexOf(row);
    window.htmx.ajax("POST", row.dataset.resolve, { target: "#review-body", values: values }).then(function () {
      var rows = queueRows();
      select(rows[Math.min(index, rows.length - 1)] || null);
    });
  }

  function queueKey(event) {
    var rows = queueRows();
    var row = selectedRow();
    var key = event.key.toLowerCase();
    if (key === "j" || key === "k") {
      var at = rows.indexOf(row);
      var next = key === "j" ? Math.min(rows.length - 1, at + 1) : Math.max(0, at - 1);
      select(rows[at === -1 ? 0 : next]);
    } else if (key === "enter" && row) {
      window.location = row.dataset.url;
    } else if (key === "a" && row) {
      queueDecide(row, row.dataset.left === "report" ? "accept_report" : "accept_annotation", row.dataset.left);
    } else if (key === "s" && row && row.dataset.right) {
      queueDecide(row, "accept_annotation", row.dataset.right);
    } else if (key === "x" && row) {
      queueDecide(row, "dismiss", "");
    } else if ((key === "o" || key === "c") && row) {
      // Another value and a comment need the adjudication page's form.
      window.location = row.dataset.url + (row.dataset.url.indexOf("?") === -1 ? "?" : "&") + "focus=" + (key === "o" ? "other" : "comment");
    } else {
      return;
    }
    event.preventDefault();
  }

  document.addEventListener("click", function (event) {
    var row = event.target.closest && event.target.closest("#review-table .review-row");
    if (row && !event.target.closest("a")) select(row);
  });

  // ------------------------------------------------------------------------------------------- adjudication page
  var page = document.getElementById("adjudicate");
  var form = document.getElementById("decision-form");

  function submitWith(button) {
    if (!button || button.hidden || button.disabled) return;
    var side = document.getElementById("side-input");
    if (side) side.value = button.dataset.side || "";
    form.requestSubmit(button);
  }

  if (form) {
    form.addEventListener("click", function (event) {
      var button = event.target.closest("button[type=submit]");
      if (button) document.getElementById("side-input").value = button.dataset.side || "";
    });
    var focus = new URLSearchParams(location.search).get("focus");
    if (focus === "other" && document.getElementById("other-value")) document.getElementById("other-value").focus();
    if (focus === "comment") document.getElementById("comment").focus();
    var other = document.getElementById("other-value");
    if (other) other.addEventListener("keydown", function (event) {
      if (event.key === "Enter") { event.preventDefault(); submitWith(document.getElementById("set-other")); }
    });
  }

  function pageKey(event) {
    var key = event.key.toLowerCase();
    if (key === "j" && page.dataset.next) window.location = page.dataset.next;
    else if (key === "k" && page.dataset.prev) window.location = page.dataset.prev;
    else if (key === "a") submitWith(document.getElementById("accept-left"));
    else if (key === "s") submitWith(document.getElementById("accept-right"));
    else if (key === "x") submitWith(document.getElementById("dismiss"));
    else if (key === "o" && document.getElementById("other-value")) document.getElementById("other-value").focus();
    else if (key === "c") document.getElementById("comment").focus();
    else return;
    event.preventDefault();
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (event.key === "?") { helpToggle(); event.preventDefault(); return; }
    if (page) pageKey(event); else if (document.getElementById("review-body")) queueKey(event);
  });

  // Layers: show or hide each reader's regions and the consensus.
  document.querySelectorAll(".layer-toggle input").forEach(function (box) {
    box.addEventListener("change", function () {
      document.querySelectorAll('#adj-svg .region[data-layer="' + CSS.escape(box.dataset.layer) + '"]').forEach(function (g) {
        g.classList.toggle("hidden", !box.checked);
      });
    });
  });

  // Outline editor: drag the consensus outline's points, or click to place the points of a new one.
  var svg = document.getElementById("adj-svg");
  var editButton = document.getElementById("edit-outline");
  if (!svg || !editButton) return;
  var SVGNS = "http://www.w3.org/2000/svg";
  var layer = document.getElementById("edit-layer");
  var points = JSON.parse(document.getElementById("edit-points").textContent || "[]");
  var editing = false, dragging = -1;

  function toImage(event) {
    var p = svg.createSVGPoint();
    p.x = event.clientX; p.y = event.clientY;
    var q = p.matrixTransform(svg.getScreenCTM().inverse());
    var w = +svg.dataset.width, h = +svg.dataset.height;
    return [Math.round(Math.min(w, Math.max(0, q.x)) * 10) / 10, Math.round(Math.min(h, Math.max(0, q.y)) * 10) / 10];
  }

  function draw() {
    layer.replaceChildren();
    if (!editing) return;
    var poly = document.createElementNS(SVGNS, "polygon");
    poly.setAttribute("points", points.map(function (p) { return p.join(","); }).join(" "));
    layer.appendChild(poly);
    var radius = Math.max(3, +svg.dataset.width / 160);
    points.forEach(function (p, i) {
      var c = document.createElementNS(SVGNS, "circle");
      c.setAttribute("cx", p[0]); c.setAttribute("cy", p[1]); c.setAttribute("r", radius);
      c.dataset.index = i;
      layer.appendChild(c);
    });
    var save = document.getElementById("save-outline");
    save.hidden = points.length < 3;
    document.getElementById("geometry-input").value = JSON.stringify({ points: points });
    document.getElementById("shape-input").value = "polygon";
  }

  editButton.addEventListener("click", function () {
    editing = !editing;
    editButton.classList.toggle("active", editing);
    document.getElementById("tool-hint").textContent = editing
      ? (points.length ? gettext("Drag the green points to reshape the consensus outline; Save outline when done.")
        : gettext("Click around the lesion to place the outline's points; Save outline when done."))
      : gettext("Regions in this disagreement are drawn bold; toggle layers above.");
    if (!editing) {
      document.getElementById("save-outline").hidden = true;
      // Leaving the editor withdraws its outline: a decision taken afterwards must not carry an
      // unfinished (or empty) one with it.
      document.getElementById("geometry-input").value = "";
      document.getElementById("shape-input").value = "";
    }
    draw();
  });

  svg.addEventListener("pointerdown", function (event) {
    if (!editing) return;
    if (event.target.tagName === "circle" && event.target.dataset.index !== undefined) {
      dragging = +event.target.dataset.index;
      svg.setPointerCapture(event.pointerId);
    } else {
      points.push(toImage(event));
      draw();
    }
    event.preventDefault();
  });
  svg.addEventListener("pointermove", function (event) {
    if (dragging < 0) return;
    points[dragging] = toImage(event);
    draw();
  });
  svg.addEventListener("pointerup", function () { dragging = -1; });
})();
