// Sonoalign's one island of JavaScript: the drawing canvas of the annotate page.
//
// OpenSeadragon shows the image (zoom, pan); Annotorious and its tools plugin draw and edit shapes on
// it. This module turns their events into calls to the JSON API (/api/v1/regions/) and keeps nothing
// but what is on screen: the regions of this image as the server last returned them. The region list
// is server-rendered and refreshed by htmx when we fire `regions-changed` on <body>.
//
// The report panel (also server-rendered, an htmx partial of the alignment app) marks each sentence
// with the ids of the regions it is aligned to (`data-regions`); hovering one lights the other up.
// "Apply report findings" fills the selected region's form from the report as *suggested* values,
// which are saved (the normal region PATCH, with the version) only when the reader confirms them.
//
// The Assist tool asks the server for a proposed outline around a click or a box
// (/api/v1/images/<id>/outline-proposals/); the reader accepts it (Enter) as an ordinary region.
// After any outline is finished, the keyboard moves through the region's missing required attributes.
//
// Every sentence shown here goes through Django's JavaScript catalogue (gettext, interpolate).
(function () {
  "use strict";

  const root = document.getElementById("workspace");
  if (!root) return;
  const config = JSON.parse(document.getElementById("workspace-config").textContent);
  const csrf = root.dataset.csrf;
  const W = config.width, H = config.height;
  const $ = (selector) => root.querySelector(selector);
  const format = (text, values) => interpolate(text, values, true);

  // ------------------------------------------------------------------ status and messages

  const statusEl = $("#save-status");
  let pendingSaves = 0;

  function setStatus(state, text) {
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }

  function saveStarted() {
    pendingSaves += 1;
    setStatus("saving", gettext("Saving…"));
  }

  function saveFinished(ok) {
    pendingSaves = Math.max(0, pendingSaves - 1);
    if (!ok) return;
    if (pendingSaves === 0) setStatus("saved", gettext("All changes saved"));
  }

  const banner = $("#banner");
  function showBanner(kind, html) {
    banner.dataset.kind = kind;
    banner.querySelector(".banner-text").innerHTML = html;
    banner.hidden = false;
  }
  banner.querySelector(".banner-close").addEventListener("click", () => { banner.hidden = true; });

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  function errorText(body) {
    // DRF and the service answer {field: message | [messages]}; show every message with its field.
    if (!body || typeof body !== "object") return gettext("The server refused the change.");
    return Object.entries(body).map(([field, messages]) =>
      `${field === "detail" ? "" : field + ": "}${[].concat(messages).join("; ")}`).join(" · ");
  }

  async function api(method, url, body) {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    if (response.status !== 204) {
      try { data = await response.json(); } catch (_) { data = null; }
    }
    return { status: response.status, data };
  }

  // ------------------------------------------------------------------ viewer and annotator

  const viewer = OpenSeadragon({
    element: document.getElementById("viewer"),
    tileSources: { type: "image", url: config.imageUrl, buildPyramid: false },
    prefixUrl: root.dataset.static + "vendor/openseadragon-images/",
    showNavigationControl: false,
    // The 2D canvas drawer lets a CSS filter do window/level on screen without touching the pixels.
    drawer: "canvas",
    gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: false },
    maxZoomPixelRatio: 10,
    visibilityRatio: 0.6,
    animationTime: 0.4,
  });
  // Letters are this page's tool shortcuts; the viewer keeps arrows, +/- and 0 for panning and zoom
  // (its own W/A/S/D panning and R rotation would fire together with ours).
  viewer.addHandler("canvas-key", (event) => {
    if (/^Key[A-Z]$/.test(event.originalEvent.code)) event.preventDefaultAction = true;
  });

  // annotation id → region as the server last returned it; region id → annotation id.
  const regions = new Map();
  const annotationOf = new Map();

  // Exposed for the browser tests, which need image ↔ screen coordinates to draw like a person.
  window.__sonoalignViewer = viewer;

  const OWN = "#38bdf8", OTHER = "#f59e0b", SELECTED = "#facc15", LINKED = "#f472b6", PROPOSED = "#a3e635";
  // The Assist tool's proposal: a polygon under this reserved id until the reader accepts or discards it.
  const PROPOSAL = "assist-proposal";
  // Region ids lit up because the pointer is on a report sentence aligned to them.
  let highlighted = new Set();
  function regionStyle(annotation, state) {
    if (annotation.id === PROPOSAL) return { fill: PROPOSED, fillOpacity: 0.12, stroke: PROPOSED, strokeWidth: 2 };
    const region = regions.get(annotation.id);
    const mine = !region || region.author === config.user;
    if (region && highlighted.has(region.id)) return { fill: LINKED, fillOpacity: 0.22, stroke: LINKED, strokeWidth: 4 };
    const colour = state && state.selected ? SELECTED : (mine ? OWN : OTHER);
    return { fill: colour, fillOpacity: state && state.selected ? 0.18 : 0.08, stroke: colour, strokeWidth: 2 };
  }
  const anno = AnnotoriousOSD.createOSDAnnotator(viewer, {
    drawingEnabled: false,
    drawingMode: "click",
    autoSave: true,
    // While the Assist tool is on, a click asks for an outline instead of selecting a region; only
    // the proposal itself is editable.
    userSelectAction: (annotation) => (annotation.id === PROPOSAL ? "EDIT"
      : tool === "assist" ? "NONE" : (config.editable ? "EDIT" : "SELECT")),
    style: regionStyle,
  });
  AnnotoriousTools.mountPlugin(anno);

  // Points have no Annotorious shape: they are shown as small circles and remembered here.
  const pointMarkers = new Set();
  const POINT_RADIUS = Math.max(3, Math.min(W, H) / 120);

  // ------------------------------------------------------------------ geometry conversion

  const clampX = (x) => Math.min(W, Math.max(0, x));
  const clampY = (y) => Math.min(H, Math.max(0, y));
  const clampPoint = ([x, y]) => [round(clampX(x)), round(clampY(y))];
  const round = (v) => Math.round(v * 100) / 100;

  function bounds(points) {
    const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
    return { minX: Math.min(...xs), minY: Math.min(...ys), maxX: Math.max(...xs), maxY: Math.max(...ys) };
  }

  // Annotorious shape → our {shape, geometry}. Coordinates a hair outside the image (a stroke drawn
  // to the edge) are clamped, so nobody gets an error for drawing to the border.
  function toRegion(annotation) {
    const { type, geometry: g } = annotation.target.selector;
    if (type === "RECTANGLE") {
      if (!g.rot) return { shape: "rectangle", geometry: { points: [clampPoint([g.x, g.y]), clampPoint([g.x + g.w, g.y + g.h])] } };
      const cx = g.x + g.w / 2, cy = g.y + g.h / 2, c = Math.cos(g.rot), s = Math.sin(g.rot);
      const corners = [[g.x, g.y], [g.x + g.w, g.y], [g.x + g.w, g.y + g.h], [g.x, g.y + g.h]]
        .map(([x, y]) => clampPoint([cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c]));
      return { shape: "polygon", geometry: { points: corners } };
    }
    if (type === "ELLIPSE") {
      if (pointMarkers.has(annotation.id)) return { shape: "point", geometry: { points: [clampPoint([g.cx, g.cy])] } };
      return { shape: "ellipse", geometry: { center: [round(g.cx), round(g.cy)], radii: [round(g.rx), round(g.ry)], rotation: 0 } };
    }
    if (type === "LINE" || type === "POLYGON") {
      // A finishing double-click can leave the last vertex twice; a repeated vertex is no vertex.
      const points = g.points.map(clampPoint)
        .filter((p, i, all) => i === 0 || p[0] !== all[i - 1][0] || p[1] !== all[i - 1][1]);
      return { shape: type === "LINE" ? "line" : "polygon", geometry: { points } };
    }
    return { shape: String(type).toLowerCase(), geometry: g };
  }

  function toSelector(region) {
    const g = region.geometry;
    if (region.shape === "rectangle") {
      const [[x1, y1], [x2, y2]] = g.points;
      return { type: "RECTANGLE", geometry: { x: x1, y: y1, w: x2 - x1, h: y2 - y1, rot: 0, bounds: bounds(g.points) } };
    }
    if (region.shape === "ellipse" || region.shape === "point") {
      const [cx, cy] = region.shape === "point" ? g.points[0] : g.center;
      const [rx, ry] = region.shape === "point" ? [POINT_RADIUS, POINT_RADIUS] : g.radii;
      return { type: "ELLIPSE", geometry: { cx, cy, rx, ry, bounds: { minX: cx - rx, minY: cy - ry, maxX: cx + rx, maxY: cy + ry } } };
    }
    return { type: region.shape === "line" ? "LINE" : "POLYGON", geometry: { points: g.points, bounds: bounds(g.points) } };
  }

  function toAnnotation(id, region) {
    return { id, bodies: [], target: { annotation: id, selector: toSelector(region) } };
  }

  function remember(id, region) {
    regions.set(id, region);
    annotationOf.set(region.id, id);
    if (region.shape === "point") pointMarkers.add(id);
  }

  function forget(id) {
    const region = regions.get(id);
    if (region) annotationOf.delete(region.id);
    regions.delete(id);
    pointMarkers.delete(id);
  }

  const sameGeometry = (a, b) => JSON.stringify(a) === JSON.stringify(b);

  // ------------------------------------------------------------------ saving, one region at a time

  // Saves of one region run in order, each on the version the previous one returned; otherwise two
  // quick edits would race and the second would be refused as stale by our own first save.
  // ``waiting`` counts the saves of each region not yet answered, the running one included.
  const chains = new Map();
  const waiting = new Map();
  function enqueue(id, job) {
    waiting.set(id, (waiting.get(id) || 0) + 1);
    const done = () => { const left = waiting.get(id) - 1; if (left) waiting.set(id, left); else waiting.delete(id); };
    const run = () => Promise.resolve().then(job).finally(done);
    const next = (chains.get(id) || Promise.resolve()).then(run, run);
    chains.set(id, next.catch(() => {}));
    return next;
  }
  // A later edit of the region is queued behind the save now answering: the form already shows it.
  const editQueued = (id) => (waiting.get(id) || 0) > 1;
  const allSaved = () => Promise.all([...chains.values()]);

  const undoStack = [];
  function regionsChanged() { document.body.dispatchEvent(new CustomEvent("regions-changed")); }

  async function createRegion(id, body, { recordUndo = true } = {}) {
    saveStarted();
    const { status, data } = await api("POST", config.regionsUrl, { image: config.imageId, ...body });
    if (status === 201) {
      remember(id, data);
      if (recordUndo) undoStack.push({ kind: "create", id });
      saveFinished(true);
      regionsChanged();
      // A freshly finished outline is selected; the keyboard goes straight to what it still lacks.
      if (currentId() === id) {
        showForm(id);
        if (data.shape !== "line" && data.shape !== "point") focusFirstMissing();
      }
      return data;
    }
    saveFinished(false);
    anno.removeAnnotation(id);
    forget(id);
    setStatus("error", gettext("Not saved"));
    showBanner("error", `<strong>${escapeHtml(format(gettext("The %(shape)s was not saved."), { shape: shapeName(body.shape) }))}</strong> ${escapeHtml(errorText(data))}`);
    hideForm();
    return null;
  }

  // PATCH ``changes`` of the region behind annotation ``id``. ``before`` holds the previous values
  // of the changed fields, for undo.
  async function updateRegion(id, changes, { recordUndo = true } = {}) {
    const region = regions.get(id);
    if (!region) return null;
    const before = {}, seen = {};
    for (const name of Object.keys(changes)) { before[name] = region[name]; seen[name] = region[name]; }
    saveStarted();
    const { status, data } = await api("PATCH", `${config.regionsUrl}${region.id}/`, { version: region.version, ...changes, seen });
    if (status === 200) {
      remember(id, data);
      if (recordUndo) undoStack.push({ kind: "update", id, before });
      saveFinished(true);
      regionsChanged();
      if (currentId() === id) fillForm(id, { keepValues: editQueued(id) });
      return data;
    }
    saveFinished(false);
    if (status === 409) return conflict(id, data);
    if (status === 404) {
      anno.removeAnnotation(id);
      forget(id);
      hideForm();
      setStatus("error", gettext("Region gone"));
      showBanner("conflict", `<strong>${escapeHtml(gettext("This region was deleted elsewhere"))}</strong> ${escapeHtml(gettext("(in another tab or window). It is gone from this page too."))}`);
      regionsChanged();
      return null;
    }
    setStatus("error", gettext("Not saved"));
    showBanner("error", `<strong>${escapeHtml(gettext("Change not saved."))}</strong> ${escapeHtml(errorText(data))}`);
    // Put the shape back where the server has it, so the screen never shows unsaved geometry.
    if (changes.geometry) anno.updateAnnotation(toAnnotation(id, region));
    if (currentId() === id) fillForm(id);
    return null;
  }

  async function deleteRegion(id, { recordUndo = true } = {}) {
    const region = regions.get(id);
    if (!region) return;
    anno.removeAnnotation(id);
    hideForm();
    saveStarted();
    const { status, data } = await api("DELETE", `${config.regionsUrl}${region.id}/?version=${region.version}`);
    if (status === 204) {
      forget(id);
      if (recordUndo) undoStack.push({ kind: "delete", region });
      saveFinished(true);
      regionsChanged();
      return;
    }
    saveFinished(false);
    if (status === 409) { conflict(id, data); return; }
    anno.addAnnotation(toAnnotation(id, region));
    setStatus("error", gettext("Not deleted"));
    showBanner("error", `<strong>${escapeHtml(gettext("Not deleted."))}</strong> ${escapeHtml(errorText(data))}`);
  }

  // A stale save: somebody (often this reader in another tab) saved first. Never overwrite; show
  // what changed and load the saved version in place of ours.
  function conflict(id, body) {
    const current = body && body.current;
    const changed = (body && body.changed && body.changed.length) ? body.changed.join(", ") : gettext("the region");
    setStatus("conflict", gettext("Changed elsewhere"));
    showBanner("conflict",
      `<strong>${escapeHtml(gettext("This region was changed elsewhere"))}</strong> ` +
      escapeHtml(format(gettext("(another tab or window) — changed: %(changed)s. Your last edit was not applied; the page now shows the saved version. Make your edit again if it is still needed."), { changed })));
    if (!current) return null;
    remember(id, current);
    if (changed.includes("deleted")) {
      anno.removeAnnotation(id);
      forget(id);
      hideForm();
    } else {
      anno.updateAnnotation(toAnnotation(id, current));
      if (currentId() === id) fillForm(id);
    }
    regionsChanged();
    return null;
  }

  // ------------------------------------------------------------------ Annotorious events

  anno.on("createAnnotation", (annotation) => {
    setTool("select");
    outlineFinished(annotation.id, toRegion(annotation));
  });

  // A finished outline (drawn, or an accepted proposal) is saved, selected, and — once the server
  // has it — its first missing required attribute gets the keyboard (createRegion).
  function outlineFinished(id, { shape, geometry }) {
    enqueue(id, () => createRegion(id, { shape, geometry }));
    anno.setSelected(id);
    showForm(id);
  }

  anno.on("updateAnnotation", (annotation) => {
    if (annotation.id === PROPOSAL) { drawAssist(); return; }
    enqueue(annotation.id, () => {
      const region = regions.get(annotation.id);
      if (!region) return null;
      const next = toRegion(annotation);
      if (next.shape === region.shape && sameGeometry(next.geometry, region.geometry)) return null;
      return updateRegion(annotation.id, next.shape === region.shape ? { geometry: next.geometry } : next);
    });
  });

  anno.on("selectionChanged", (selected) => {
    if (selected && selected.length && selected[0].id === PROPOSAL) return;
    if (selected && selected.length) {
      showForm(selected[0].id);
    } else {
      hideForm();
    }
  });

  // ------------------------------------------------------------------ tools

  const toolButtons = [...root.querySelectorAll(".tool[data-tool]")];
  const viewerEl = document.getElementById("viewer");
  const hint = $("#tool-hint");
  const HINTS = {
    select: gettext("Click a region to edit; drag handles to reshape."),
    assist: gettext("Assist: click inside a lesion, or drag a box around it."),
    polygon: gettext("Polygon: click each point of the outline; Enter or double-click finishes, Esc cancels."),
    rectangle: gettext("Rectangle: drag from one corner to the opposite one. Esc cancels."),
    ellipse: gettext("Ellipse: drag across the lesion. Esc cancels."),
    line: gettext("Caliper: click one edge of the lesion, then the other. Esc cancels."),
    point: gettext("Point: click where the marker goes. Esc cancels."),
  };
  let tool = "select";

  function setTool(name) {
    if (!config.editable && name !== "select") return;
    if (name !== "assist") discardProposal();
    tool = name;
    anno.cancelDrawing && anno.cancelDrawing();
    if (name === "select" || name === "point" || name === "assist") {
      anno.setDrawingEnabled(false);
      if (name === "assist") { if (!proposal) anno.cancelSelected(); reportSizesLoad(); }
    } else {
      // Outlines and calipers are placed point by point (click); boxes and ellipses are dragged.
      anno.setDrawingMode(name === "polygon" || name === "line" ? "click" : "drag");
      anno.setDrawingTool(name);
      anno.setDrawingEnabled(true);
      anno.cancelSelected();
    }
    viewerEl.dataset.tool = name;
    toolButtons.forEach((button) => {
      const active = button.dataset.tool === name;
      button.classList.toggle("active", active);
      button.setAttribute("aria-pressed", String(active));
    });
    showHint(HINTS[name]);
  }

  // The footer says what the tool does; with Assist the same words float over the image, where the
  // reader is looking (the footer is narrow beside window/level).
  const assistTip = document.createElement("div");
  assistTip.className = "assist-tip";
  assistTip.setAttribute("role", "status");
  viewerEl.append(assistTip);
  function showHint(text) {
    hint.textContent = text;
    hint.title = text;
    assistTip.textContent = text;
    assistTip.hidden = tool !== "assist";
  }
  toolButtons.forEach((button) => button.addEventListener("click", () => setTool(button.dataset.tool)));

  // Points: Annotorious has no point tool, so a click with the point tool makes a small circle here.
  viewer.addHandler("canvas-click", (event) => {
    if (tool !== "point" || !event.quick) return;
    event.preventDefaultAction = true;
    const at = viewer.viewport.viewerElementToImageCoordinates(event.position);
    const id = `new-point-${Date.now()}`;
    const region = { shape: "point", geometry: { points: [clampPoint([at.x, at.y])] } };
    pointMarkers.add(id);
    anno.addAnnotation(toAnnotation(id, region));
    setTool("select");
    enqueue(id, () => createRegion(id, region));
  });

  // Enter finishes a polygon. Annotorious finishes one on double-click, which arrives after the
  // click that put the last point down twice; replay exactly that on the drawing layer.
  let lastPointer = null;
  viewerEl.addEventListener("pointermove", (event) => { lastPointer = event; }, true);
  function finishPolygon() {
    if (tool !== "polygon" || !lastPointer) return;
    const target = lastPointer.target;
    const init = { bubbles: true, cancelable: true, clientX: lastPointer.clientX, clientY: lastPointer.clientY,
      pointerId: 1, pointerType: "mouse", isPrimary: true, button: 0, buttons: 1 };
    target.dispatchEvent(new PointerEvent("pointerdown", init));
    target.dispatchEvent(new PointerEvent("pointerup", { ...init, buttons: 0 }));
    target.dispatchEvent(new MouseEvent("dblclick", { bubbles: true, cancelable: true, clientX: init.clientX, clientY: init.clientY }));
  }

  // Cursor position in image pixels, for the reader's orientation.
  const cursorEl = $("#cursor-pos");
  new OpenSeadragon.MouseTracker({
    element: viewer.element,
    moveHandler: (event) => {
      const p = viewer.viewport.viewerElementToImageCoordinates(event.position);
      cursorEl.textContent = (p.x >= 0 && p.y >= 0 && p.x <= W && p.y <= H) ? `x ${Math.round(p.x)} · y ${Math.round(p.y)} px` : "";
    },
  });

  // ------------------------------------------------------------------ window / level

  const brightness = $("#wl-brightness"), contrast = $("#wl-contrast");
  function applyWindowLevel() {
    $("#wl-brightness-out").textContent = `${brightness.value}%`;
    $("#wl-contrast-out").textContent = `${contrast.value}%`;
    // Display only: the filter applies to the drawn canvas, never to the stored image.
    const canvas = viewer.drawer && viewer.drawer.canvas;
    if (canvas) canvas.style.filter = `brightness(${brightness.value / 100}) contrast(${contrast.value / 100})`;
  }
  brightness.addEventListener("input", applyWindowLevel);
  contrast.addEventListener("input", applyWindowLevel);
  $("#wl-reset").addEventListener("click", () => { brightness.value = 100; contrast.value = 100; applyWindowLevel(); });
  $("#zoom-fit").addEventListener("click", () => viewer.viewport.goHome());

  // ------------------------------------------------------------------ the lexicon form

  const form = $("#region-form");
  const none = $("#region-none");
  let formFor = null;
  let focusedAttribute = null;

  function currentId() { return formFor; }

  const SHAPE_NAMES = {
    polygon: gettext("polygon"), rectangle: gettext("rectangle"), ellipse: gettext("ellipse"),
    line: gettext("caliper"), point: gettext("point"),
  };
  const shapeName = (shape) => SHAPE_NAMES[shape] || shape;

  function measureRows(region) {
    const rows = [];
    const mm = (v) => (v === null || v === undefined ? null : `${v.toFixed(1)} mm`);
    if (region.shape === "line") {
      const p = region.geometry.points;
      let px = 0;
      for (let i = 1; i < p.length; i += 1) px += Math.hypot(p[i][0] - p[i - 1][0], p[i][1] - p[i - 1][1]);
      rows.push([gettext("Length"), mm(region.long_axis_mm) || `${px.toFixed(0)} px`]);
    } else if (region.shape !== "point") {
      if (config.spacing) {
        rows.push([gettext("Long axis"), mm(region.long_axis_mm)], [gettext("Short axis"), mm(region.short_axis_mm)],
          [gettext("Area"), `${(region.area_mm2 || 0).toFixed(1)} mm²`]);
      } else {
        rows.push([gettext("Area"), `${Math.round(region.area_px)} px²`], [gettext("Spacing"), gettext("unknown — no mm")]);
      }
    } else {
      const [x, y] = region.geometry.points[0];
      rows.push([gettext("Position"), `${Math.round(x)}, ${Math.round(y)} px`]);
    }
    return rows;
  }

  // ``keepValues``: leave the attribute values as the reader has them (a later edit is still being
  // saved), so an older answer never undoes what the reader has just chosen.
  function fillForm(id, { keepValues = false } = {}) {
    const region = regions.get(id);
    if (!region) return;
    const mine = region.author === config.user;
    // Whether this region may be changed is the server's answer (annotation/permissions.py), per region.
    const editable = config.editable && region.can_edit;
    const name = shapeName(region.shape);
    $("#region-form-title").textContent = `${name[0].toUpperCase()}${name.slice(1)} #${region.id}` + (mine ? "" : ` · ${region.author || region.source}`);
    $("#region-version").textContent = `v${region.version}`;
    $("#region-measures").innerHTML = measureRows(region)
      .map(([k, v]) => `<div><dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd></div>`).join("");
    const active = document.activeElement;
    for (const name of ["label", "lesion_key"]) {
      const input = form.elements[name];
      if (input !== active && !keepValues) input.value = region[name] || "";
    }
    if (!keepValues) form.querySelectorAll("fieldset.attribute").forEach((fieldset) => {
      const code = fieldset.dataset.attribute;
      const value = region.attributes[code];
      const values = value === undefined ? [] : [].concat(value);
      fieldset.querySelectorAll("input").forEach((input) => { input.checked = values.includes(input.value); });
      fieldset.querySelectorAll("option").forEach((option) => { option.selected = values.includes(option.value); });
    });
    form.querySelectorAll("input, select").forEach((el) => { el.disabled = !editable; });
    showSuggestions(id, editable);
    root.querySelectorAll(".region-item").forEach((item) =>
      item.classList.toggle("selected", Number(item.dataset.regionId) === region.id));
  }

  function showForm(id) {
    formFor = id;
    if (!regions.has(id)) return;  // still being created: filled in when the server answers
    form.hidden = false;
    none.hidden = true;
    fillForm(id);
    regionSelected(regions.get(id).id);
  }

  function hideForm() {
    formFor = null;
    form.hidden = true;
    none.hidden = false;
    root.querySelectorAll(".region-item.selected").forEach((item) => item.classList.remove("selected"));
    regionSelected(null);
  }

  // What the form says, except that an attribute still only *suggested* keeps its saved value: a
  // suggestion is saved when the reader confirms it or edits that attribute, never by the way.
  function attributesFromForm() {
    const attributes = {};
    const pending = (suggestions.get(formFor) || {}).attributes || {};
    const saved = (regions.get(formFor) || {}).attributes || {};
    form.querySelectorAll("fieldset.attribute").forEach((fieldset) => {
      const code = fieldset.dataset.attribute;
      if (code in pending) {
        if (saved[code] !== undefined) attributes[code] = saved[code];
        return;
      }
      const many = fieldset.dataset.cardinality === "many";
      const chosen = [...fieldset.querySelectorAll("input:checked")].map((i) => i.value)
        .concat([...fieldset.querySelectorAll("option:checked")].map((o) => o.value).filter(Boolean));
      if (many ? chosen.length : chosen[0]) attributes[code] = many ? chosen : chosen[0];
    });
    return attributes;
  }

  // ``edited``: the attribute the reader just changed; a suggestion pending on it is thereby accepted
  // (with the reader's edit on top).
  function saveAttributes(edited) {
    const id = formFor;
    if (!id) return;
    if (edited) acceptSuggestion(id, edited);
    const attributes = attributesFromForm();
    enqueue(id, () => updateRegion(id, { attributes }));
  }

  // A second click on the chosen value of a single-choice attribute clears it.
  form.addEventListener("click", (event) => {
    const input = event.target.closest("input[type=radio]");
    if (!input) return;
    if (input.dataset.wasChecked === "true") { input.checked = false; saveAttributes(input.name); }
  });
  form.addEventListener("pointerdown", (event) => {
    const label = event.target.closest(".chip");
    if (!label) return;
    const input = label.querySelector("input[type=radio]");
    if (input) input.dataset.wasChecked = String(input.checked);
  });
  form.addEventListener("change", (event) => {
    const name = event.target.name;
    if (name === "label" || name === "lesion_key") {
      const id = formFor;
      const value = event.target.value.trim();
      if (id && regions.get(id) && regions.get(id)[name] !== value) enqueue(id, () => updateRegion(id, { [name]: value }));
      return;
    }
    saveAttributes(name);
  });
  form.addEventListener("submit", (event) => event.preventDefault());
  form.addEventListener("focusin", (event) => {
    const fieldset = event.target.closest("fieldset.attribute");
    if (fieldset) setFocusedAttribute(fieldset);
  });
  form.addEventListener("pointerdown", (event) => {
    const fieldset = event.target.closest("fieldset.attribute");
    if (fieldset) setFocusedAttribute(fieldset);
  });

  function setFocusedAttribute(fieldset) {
    if (focusedAttribute) focusedAttribute.classList.remove("focused");
    focusedAttribute = fieldset;
    if (fieldset) fieldset.classList.add("focused");
    $("#attribute-keys").hidden = !fieldset;
  }

  // ------------------------------------------------------------------ keyboard flow through the attributes

  // The attribute with the keyboard: its chosen value (or first value), or its list when it has many.
  function focusAttribute(fieldset, input) {
    setFocusedAttribute(fieldset);
    const target = input || fieldset.querySelector("select") || fieldset.querySelector("input:checked") ||
      fieldset.querySelector("input") || fieldset;
    target.focus({ preventScroll: true });
    fieldset.scrollIntoView({ block: "nearest" });
  }

  // Back to the image: letters choose tools again, digits pick nothing.
  function focusCanvas() {
    setFocusedAttribute(null);
    viewer.canvas.focus({ preventScroll: true });
  }

  const attributeSets = () => [...form.querySelectorAll("fieldset.attribute")];
  const hasValue = (fieldset) => !!fieldset.querySelector("input:checked") ||
    [...fieldset.querySelectorAll("option:checked")].some((o) => o.value);
  // Required attributes the form still shows empty, in the form's order.
  const missingAttributes = () => attributeSets().filter((f) => "required" in f.dataset && !hasValue(f));

  function focusFirstMissing() {
    const region = regions.get(formFor);
    if (!region || !config.editable || !region.can_edit) return;
    const missing = missingAttributes();
    if (missing.length) focusAttribute(missing[0]); else focusCanvas();
  }

  // The next missing attribute after ``fieldset`` (wrapping round), or the image when none is left.
  function focusNextMissing(fieldset) {
    const missing = missingAttributes();
    const all = attributeSets();
    const after = missing.find((f) => all.indexOf(f) > all.indexOf(fieldset));
    const next = after || missing[0];
    if (next) focusAttribute(next); else focusCanvas();
  }

  function focusNeighbour(fieldset, step) {
    const all = attributeSets();
    focusAttribute(all[(all.indexOf(fieldset) + step + all.length) % all.length]);
  }

  // 1–9: the n-th value of the focused attribute. A single-choice attribute then hands the keyboard
  // to the next missing one; a several-value attribute toggles the value and keeps the keyboard.
  function pickValue(n) {
    if (!focusedAttribute || form.hidden) return false;
    const fieldset = focusedAttribute;
    const inputs = [...fieldset.querySelectorAll("input")];
    const options = [...fieldset.querySelectorAll("option")].filter((o) => o.value);
    const many = fieldset.dataset.cardinality === "many";
    if (inputs.length) {
      const input = inputs[n - 1];
      if (!input || input.disabled) return false;
      input.checked = input.type === "checkbox" ? !input.checked : true;
      if (many) input.focus({ preventScroll: true });  // Space toggles it again
    } else if (options.length) {
      const option = options[n - 1];
      const select = fieldset.querySelector("select");
      if (!option || select.disabled) return false;
      option.selected = select.multiple ? !option.selected : true;
    } else {
      return false;
    }
    saveAttributes(fieldset.dataset.attribute);
    if (!many) focusNextMissing(fieldset);
    return true;
  }

  // ------------------------------------------------------------------ region list (htmx partial)

  root.addEventListener("click", (event) => {
    const item = event.target.closest(".region-item");
    if (!item || event.target.closest("a")) return;
    const id = annotationOf.get(Number(item.dataset.regionId));
    if (!id) return;
    setTool("select");
    anno.setSelected(id);
    showForm(id);
  });
  document.body.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target.id === "region-list" && formFor && regions.get(formFor)) {
      const rid = regions.get(formFor).id;
      root.querySelectorAll(".region-item").forEach((item) => item.classList.toggle("selected", Number(item.dataset.regionId) === rid));
    }
  });

  // ------------------------------------------------------------------ report ↔ regions

  // Hovering a sentence outlines the regions it is aligned to (on the image and in the list);
  // hovering or selecting a region marks its sentences. The links come from the server-rendered
  // report panel (`data-regions` on each sentence), which htmx refreshes; nothing is kept here.
  const selectedInput = document.getElementById("selected-region");
  let selectedRegion = null;

  const sentenceRegions = (li) => (li.dataset.regions || "").split(" ").filter(Boolean).map(Number);

  function highlightRegions(ids) {
    highlighted = new Set(ids);
    anno.setStyle((annotation, state) => regionStyle(annotation, state));  // a new function redraws
    viewerEl.dataset.highlighted = [...highlighted].join(" ");
    root.querySelectorAll(".region-item").forEach((item) =>
      item.classList.toggle("linked", highlighted.has(Number(item.dataset.regionId))));
  }

  function markSentences(regionId, className) {
    root.querySelectorAll(".sentence").forEach((li) =>
      li.classList.toggle(className, regionId !== null && sentenceRegions(li).includes(regionId)));
  }

  function regionSelected(regionId) {
    markSentences(regionId, "linked-selected");
    if (selectedRegion === regionId) return;
    selectedRegion = regionId;
    if (selectedInput) selectedInput.value = regionId === null ? "" : String(regionId);
    document.body.dispatchEvent(new CustomEvent("region-selected", { detail: { region: regionId } }));
  }

  function sentenceOver(event) {
    const li = event.target.closest(".sentence[data-regions]");
    if (!li) return;
    root.querySelectorAll(".sentence.hover").forEach((other) => other.classList.remove("hover"));
    li.classList.add("hover");
    highlightRegions(sentenceRegions(li));
  }
  function sentenceOut(event) {
    const li = event.target.closest(".sentence[data-regions]");
    if (!li || li.contains(event.relatedTarget)) return;
    li.classList.remove("hover");
    highlightRegions([]);
  }
  const reportEl = document.getElementById("report-sentences");
  if (reportEl) {
    reportEl.addEventListener("mouseover", sentenceOver);
    reportEl.addEventListener("mouseout", sentenceOut);
    reportEl.addEventListener("focusin", sentenceOver);
    reportEl.addEventListener("focusout", sentenceOut);
  }

  const regionIdOf = (annotation) => (regions.get(annotation.id) || {}).id ?? null;
  anno.on("mouseEnterAnnotation", (annotation) => markSentences(regionIdOf(annotation), "hover-linked"));
  anno.on("mouseLeaveAnnotation", () => markSentences(null, "hover-linked"));
  root.addEventListener("mouseover", (event) => {
    const item = event.target.closest(".region-item[data-region-id]");
    if (item) markSentences(Number(item.dataset.regionId), "hover-linked");
  });
  root.addEventListener("mouseout", (event) => {
    const item = event.target.closest(".region-item[data-region-id]");
    if (item && !item.contains(event.relatedTarget)) markSentences(null, "hover-linked");
  });
  document.body.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target.id === "report-sentences") markSentences(selectedRegion, "linked-selected");
    if (event.detail.target.id === "region-list" && highlighted.size) highlightRegions([...highlighted]);
  });

  // ------------------------------------------------------------------ apply report findings

  // annotation id → {attributes: {code: value(s)}, basis}: values the report suggests and the reader
  // has not confirmed yet. Shown in the form with their own style; never saved by themselves.
  const suggestions = new Map();
  const applyButton = $("#apply-findings");
  const suggestNote = $("#suggest-note");
  const suggestActions = $("#suggest-actions");
  const sameValues = (a, b) => JSON.stringify([].concat(a ?? []).sort()) === JSON.stringify([].concat(b ?? []).sort());

  function showSuggestions(id, editable) {
    const pending = (suggestions.get(id) || {}).attributes || {};
    form.querySelectorAll("fieldset.attribute").forEach((fieldset) => {
      const code = fieldset.dataset.attribute;
      const on = code in pending;
      fieldset.classList.toggle("suggested", on);
      if (!on) return;
      const values = [].concat(pending[code]);
      fieldset.querySelectorAll("input").forEach((input) => { input.checked = values.includes(input.value); });
      fieldset.querySelectorAll("option").forEach((option) => { option.selected = values.includes(option.value); });
    });
    if (!applyButton) return;
    applyButton.disabled = !editable;
    const count = Object.keys(pending).length;
    suggestActions.hidden = count === 0;
    if (count) {
      suggestNote.textContent = format(suggestions.get(id).basis === "aligned"
        ? gettext("%(count)s suggested from the aligned report sentence — confirm or edit to save")
        : gettext("%(count)s suggested from the report finding at this location — confirm or edit to save"), { count });
    } else if (suggestNote.dataset.for !== String(id)) {
      suggestNote.textContent = "";
    }
    suggestNote.dataset.for = String(id);
  }

  function acceptSuggestion(id, code) {
    const entry = suggestions.get(id);
    if (!entry || !(code in entry.attributes)) return;
    delete entry.attributes[code];
    if (!Object.keys(entry.attributes).length) suggestions.delete(id);
  }

  async function applyFindings() {
    const id = formFor;
    const region = regions.get(id);
    if (!region || !config.editable || !region.can_edit) return;
    suggestNote.textContent = gettext("Reading the report…");
    const url = root.dataset.reportFindingsUrl.replace("/regions/0/", `/regions/${region.id}/`);
    const { status, data } = await api("GET", url);
    if (formFor !== id) return;
    if (status !== 200) { suggestNote.textContent = format(gettext("Could not read the report findings: %(error)s"), { error: errorText(data) }); return; }
    const pending = {};
    for (const [code, value] of Object.entries(data.attributes || {})) {
      const fieldset = form.querySelector(`fieldset.attribute[data-attribute="${code}"]`);
      if (!fieldset) continue;
      // A multi-choice attribute gains the report's values; nothing the reader tagged is dropped.
      const next = fieldset.dataset.cardinality === "many" ? [...new Set([].concat(region.attributes[code] ?? [], value))] : value;
      if (!sameValues(next, region.attributes[code])) pending[code] = next;
    }
    if (!data.basis || !Object.keys(data.attributes || {}).length) {
      suggestions.delete(id);
      suggestNote.textContent = gettext("The report states no lexicon values for this region.");
    } else if (!Object.keys(pending).length) {
      suggestions.delete(id);
      suggestNote.textContent = gettext("The saved values already agree with the report.");
    } else {
      suggestions.set(id, { attributes: pending, basis: data.basis });
    }
    root.querySelectorAll(".sentence").forEach((li) =>
      li.classList.toggle("suggest-source", (data.sentences || []).includes(Number(li.dataset.sentenceId))));
    fillForm(id);
  }

  function confirmSuggestions() {
    const id = formFor;
    if (!id || !suggestions.has(id)) return;
    suggestions.delete(id);  // the form now shows them as chosen: save what it shows
    const attributes = attributesFromForm();
    suggestNote.textContent = "";
    enqueue(id, () => updateRegion(id, { attributes }));
  }

  function discardSuggestions() {
    const id = formFor;
    suggestions.delete(id);
    suggestNote.textContent = "";
    root.querySelectorAll(".sentence.suggest-source").forEach((li) => li.classList.remove("suggest-source"));
    if (id) fillForm(id);
  }
  if (applyButton) {
    applyButton.addEventListener("click", applyFindings);
    $("#suggest-confirm").addEventListener("click", confirmSuggestions);
    $("#suggest-discard").addEventListener("click", discardSuggestions);
  }

  // ------------------------------------------------------------------ assisted outlines

  // The Assist tool: a click inside a lesion or a box dragged around it goes to the server, which
  // answers with a proposed outline. The proposal is shown as an editable polygon in its own colour
  // (dashed while edited, app.css) and saved only when the reader accepts it; Shift+click marks a
  // point that is not lesion and asks again with the same prompt.
  let proposal = null;  // {prompt, exclude, mm} while a proposal is on screen
  let asking = 0;       // answers to an older prompt than the latest are dropped
  const SVG = "http://www.w3.org/2000/svg";
  const assistLayer = document.createElementNS(SVG, "svg");
  assistLayer.classList.add("assist-layer");
  const assistLabel = document.createElement("div");
  assistLabel.className = "assist-label";
  assistLabel.hidden = true;
  viewerEl.append(assistLayer, assistLabel);
  let rubber = null;    // {start, end} in image pixels while a box is dragged

  const toScreen = ([x, y]) => {
    const p = viewer.viewport.imageToViewerElementCoordinates(new OpenSeadragon.Point(x, y));
    return [p.x, p.y];
  };
  function toImage(event) {
    const r = viewerEl.getBoundingClientRect();
    const p = viewer.viewport.viewerElementToImageCoordinates(new OpenSeadragon.Point(event.clientX - r.left, event.clientY - r.top));
    return [round(p.x), round(p.y)];
  }
  const proposalPoints = () => {
    const shown = anno.getAnnotationById(PROPOSAL);
    return shown ? shown.target.selector.geometry.points : null;
  };

  // The longest chord of the outline (its two farthest vertices), in mm when the spacing is known.
  function longAxis(points) {
    const [sx, sy] = config.spacing || [1, 1];
    let best = { length: 0, ends: [points[0], points[0]] };
    for (let i = 0; i < points.length; i += 1) {
      for (let j = i + 1; j < points.length; j += 1) {
        const length = Math.hypot((points[i][0] - points[j][0]) * sx, (points[i][1] - points[j][1]) * sy);
        if (length > best.length) best = { length, ends: [points[i], points[j]] };
      }
    }
    return best;
  }

  // Sizes the report gives for lesions not yet linked to a region of this image, read once from the
  // study's alignment (the same sentences and findings as the report panel).
  let reportSizes = null;
  function reportSizesLoad() {
    if (reportSizes || !root.dataset.studyAlignmentUrl) return;
    reportSizes = [];
    api("GET", root.dataset.studyAlignmentUrl).then(({ status, data }) => {
      if (status !== 200) return;
      for (const sentence of data.sentences || []) {
        if ((sentence.links || []).length) continue;
        for (const finding of sentence.findings || []) {
          if (!finding.negated && finding.size_mm && finding.size_mm.length) reportSizes.push(finding.size_mm);
        }
      }
      drawAssist();
    });
  }
  // The report size nearest to the proposal's long axis: the finding it most likely is.
  function reportSizeFor(longMm) {
    if (!reportSizes || !reportSizes.length) return null;
    const distance = (size) => Math.abs(Math.max(...size) - longMm);
    return reportSizes.reduce((best, size) => (distance(size) < distance(best) ? size : best));
  }

  function svgElement(name, attributes) {
    const el = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, value);
    assistLayer.append(el);
    return el;
  }

  // The long axis with its length (and the report's size) beside it, the "not lesion" marks, and the
  // box being dragged; redrawn whenever the view or the proposal moves.
  function drawAssist() {
    assistLayer.replaceChildren();
    assistLabel.hidden = true;
    if (rubber) {
      const [a, b] = [toScreen(rubber.start), toScreen(rubber.end)];
      svgElement("rect", { class: "assist-box", x: Math.min(a[0], b[0]), y: Math.min(a[1], b[1]),
        width: Math.abs(a[0] - b[0]), height: Math.abs(a[1] - b[1]) });
    }
    if (!proposal) return;
    for (const point of proposal.exclude) {
      const [x, y] = toScreen(point);
      svgElement("path", { class: "assist-exclude", d: `M${x - 5} ${y - 5}l10 10m0 -10l-10 10` });
    }
    const points = proposalPoints();
    if (!points || points.length < 2) return;
    const axis = longAxis(points);
    const [a, b] = axis.ends.map(toScreen);
    svgElement("line", { class: "assist-axis", x1: a[0], y1: a[1], x2: b[0], y2: b[1] });
    const length = config.spacing ? `${axis.length.toFixed(1)} mm` : `${Math.round(axis.length)} px`;
    const size = config.spacing ? reportSizeFor(axis.length) : (reportSizes || [])[0];
    assistLabel.textContent = size
      ? format(gettext("%(length)s · report %(size)s"), { length, size: `${size.map((v) => +v.toFixed(1)).join(" × ")} mm` })
      : length;
    assistLabel.hidden = false;
    // Beside the axis: just past its end nearer the right, clear of the outline's middle.
    const [x, y] = a[0] > b[0] ? a : b;
    const width = assistLabel.offsetWidth;
    const left = x + 8 + width < viewerEl.clientWidth ? x + 8 : Math.min(a[0], b[0]) - 8 - width;
    assistLabel.style.left = `${Math.round(Math.max(4, left))}px`;
    assistLabel.style.top = `${Math.round(Math.min(Math.max(4, y - 10), viewerEl.clientHeight - 24))}px`;
  }
  ["animation", "update-viewport", "resize", "open"].forEach((name) => viewer.addHandler(name, drawAssist));

  function showProposal(points) {
    const region = { shape: "polygon", geometry: { points: points.map(clampPoint) } };
    if (anno.getAnnotationById(PROPOSAL)) anno.updateAnnotation(toAnnotation(PROPOSAL, region));
    else anno.addAnnotation(toAnnotation(PROPOSAL, region));
    anno.setSelected(PROPOSAL, true);
    viewerEl.dataset.proposal = "shown";
    drawAssist();
  }

  function discardProposal() {
    asking += 1;
    proposal = null;
    rubber = null;
    delete viewerEl.dataset.proposal;
    delete viewerEl.dataset.busy;
    if (tool === "assist") showHint(HINTS.assist);
    if (anno.getAnnotationById(PROPOSAL)) {
      anno.cancelSelected();
      anno.removeAnnotation(PROPOSAL);
    }
    drawAssist();
  }

  async function propose(prompt, exclude) {
    const ask = ++asking;
    viewerEl.dataset.busy = "true";
    showHint(gettext("Finding the outline…"));
    const { status, data } = await api("POST", root.dataset.outlineProposalsUrl, { ...prompt, exclude });
    if (ask !== asking || tool !== "assist") return;
    delete viewerEl.dataset.busy;
    if (status === 200) {
      proposal = { prompt, exclude };
      showProposal(data.points);
      showHint(gettext("Enter accepts · Esc discards · [ ] or scroll resizes · Shift+click: not lesion"));
      return;
    }
    showHint(status === 422
      ? gettext("No outline found there. Click nearer the lesion's middle, or drag a box around it.")
      : format(gettext("No proposal: %(error)s"), { error: errorText(data) }));
  }

  // Grow or shrink about the outline's centroid (area-weighted), so it stays on the lesion.
  function scaleProposal(factor) {
    const points = proposalPoints();
    if (!points) return;
    let area = 0, cx = 0, cy = 0;
    points.forEach(([x0, y0], i) => {
      const [x1, y1] = points[(i + 1) % points.length];
      const cross = x0 * y1 - x1 * y0;
      area += cross; cx += (x0 + x1) * cross; cy += (y0 + y1) * cross;
    });
    if (Math.abs(area) < 1e-9) return;
    cx /= 3 * area; cy /= 3 * area;
    showProposal(points.map(([x, y]) => [cx + (x - cx) * factor, cy + (y - cy) * factor]));
  }

  function acceptProposal() {
    const shown = anno.getAnnotationById(PROPOSAL);
    if (!shown) return;
    const region = toRegion(shown);  // clamped to the image, repeated vertices dropped
    discardProposal();
    setTool("select");
    const id = `new-assist-${Date.now()}`;
    anno.addAnnotation(toAnnotation(id, region));
    outlineFinished(id, region);
  }

  // Pointer input of the Assist tool, taken before the viewer (no panning) and Annotorious (no
  // selecting) see it; the proposal's own handles stay live so that its points can be dragged.
  const onHandle = (target) => !!target.closest(".a9s-handle, .a9s-shape-handle, .a9s-polygon-midpoint, .a9s-edge-handle");
  viewerEl.addEventListener("pointerdown", (event) => {
    if (tool !== "assist" || event.button !== 0) return;
    if (!event.shiftKey && proposal && onHandle(event.target)) return;
    event.preventDefault();
    event.stopPropagation();
    const at = toImage(event);
    if (event.shiftKey) {
      if (proposal) propose(proposal.prompt, [...proposal.exclude, at]);
      return;
    }
    rubber = { start: at, end: at, x: event.clientX, y: event.clientY };
  }, true);
  window.addEventListener("pointermove", (event) => {
    if (!rubber) return;
    rubber.end = toImage(event);
    drawAssist();
  }, true);
  window.addEventListener("pointerup", (event) => {
    if (!rubber) return;
    const { start, x, y } = rubber;
    const end = toImage(event);
    rubber = null;
    drawAssist();
    event.stopPropagation();
    // A drag of a few screen pixels is still a click.
    if (Math.hypot(event.clientX - x, event.clientY - y) < 6) {
      propose({ point: start }, []);
    } else {
      propose({ box: [Math.min(start[0], end[0]), Math.min(start[1], end[1]), Math.max(start[0], end[0]), Math.max(start[1], end[1])] }, []);
    }
  }, true);
  viewerEl.addEventListener("wheel", (event) => {
    if (tool !== "assist" || !proposal) return;
    event.preventDefault();
    event.stopPropagation();
    scaleProposal(event.deltaY < 0 ? 1.05 : 1 / 1.05);
  }, { capture: true, passive: false });

  // ------------------------------------------------------------------ undo

  async function undo() {
    const step = undoStack.pop();
    if (!step) { setStatus("idle", gettext("Nothing to undo")); return; }
    if (step.kind === "create") {
      await enqueue(step.id, () => deleteRegion(step.id, { recordUndo: false }));
    } else if (step.kind === "update") {
      await enqueue(step.id, async () => {
        const saved = await updateRegion(step.id, step.before, { recordUndo: false });
        if (saved) anno.updateAnnotation(toAnnotation(step.id, saved));
      });
    } else if (step.kind === "delete") {
      // Restore the same row: its id, links and history stay with it.
      const id = `undo-${step.region.id}-${Date.now()}`;
      await enqueue(id, async () => {
        saveStarted();
        const { status, data } = await api("POST", `${config.regionsUrl}${step.region.id}/restore/`, {});
        saveFinished(status === 200);
        if (status !== 200) {
          setStatus("error", gettext("Not restored"));
          showBanner("error", `<strong>${escapeHtml(gettext("The region could not be restored."))}</strong> ${escapeHtml(errorText(data))}`);
          return;
        }
        if (data.shape === "point") pointMarkers.add(id);
        remember(id, data);
        anno.addAnnotation(toAnnotation(id, data));
        regionsChanged();
      });
    }
  }
  $("#undo").addEventListener("click", undo);
  $("#delete-region").addEventListener("click", deleteSelected);

  function deleteSelected() {
    const selected = anno.getSelected();
    const id = (selected && selected[0] && selected[0].id) || formFor;
    if (!id || !regions.has(id)) return;
    if (!regions.get(id).can_edit) return;
    enqueue(id, () => deleteRegion(id));
  }

  // ------------------------------------------------------------------ submit

  const submitForm = $("#submit-form");

  // The first of this reader's outlines that still lacks a required attribute (annotation id).
  // Calipers and points carry no lesion description, as the server's submit check says too.
  function firstIncomplete() {
    const required = attributeSets().filter((f) => "required" in f.dataset).map((f) => f.dataset.attribute);
    for (const [id, region] of regions) {
      if (!region.can_edit || region.author !== config.user || region.shape === "line" || region.shape === "point") continue;
      if (required.some((code) => [].concat(region.attributes[code] ?? []).length === 0)) return id;
    }
    return null;
  }

  async function submitAndNext() {
    if (!config.submitUrl || !config.editable) return;
    setStatus("saving", gettext("Submitting…"));
    await allSaved();
    // Something missing: take the reader to it rather than to a refusal.
    const incomplete = firstIncomplete();
    if (incomplete) {
      setTool("select");
      anno.setSelected(incomplete);
      showForm(incomplete);
      focusFirstMissing();
      setStatus("error", gettext("Required attribute missing"));
      return;
    }
    const { status, data } = await api("POST", config.submitUrl, {});
    if (status === 200) {
      window.location.href = data.next ? data.next.annotate_url : config.queueUrl;
      return;
    }
    setStatus("error", gettext("Not submitted"));
    const problems = data && data.regions ? data.regions : [errorText(data)];
    showBanner("error", `<strong>${escapeHtml(gettext("Not submitted yet — complete these first:"))}</strong><ul>` +
      problems.map((p) => `<li>${escapeHtml(p)}</li>`).join("") + "</ul>");
  }
  if (submitForm) submitForm.addEventListener("submit", (event) => { event.preventDefault(); submitAndNext(); });

  // ------------------------------------------------------------------ keyboard

  const help = $("#help");
  $("#help-open").addEventListener("click", () => help.showModal());

  function typing(target) {
    return target && (target.tagName === "TEXTAREA" || target.tagName === "SELECT" ||
      (target.tagName === "INPUT" && !["radio", "checkbox", "range"].includes(target.type)));
  }

  // Capture phase on window: our shortcuts win over Annotorious' own Ctrl+Z, which would undo only
  // its local store and leave the server (and our history) out of step.
  window.addEventListener("keydown", (event) => {
    if (help.open && event.key !== "?") return;
    // In an attribute: Tab moves between attributes, Enter to the next missing one, Esc to the image.
    const attribute = event.target.closest && event.target.closest("#region-form fieldset.attribute");
    if (attribute && !event.ctrlKey && !event.metaKey && !event.altKey) {
      if (event.key === "Tab") { event.preventDefault(); focusNeighbour(attribute, event.shiftKey ? -1 : 1); return; }
      if (event.key === "Enter") { event.preventDefault(); focusNextMissing(attribute); return; }
      if (event.key === "Escape") { event.preventDefault(); focusCanvas(); return; }
    }
    if (event.key === "Escape") {
      if (proposal) { discardProposal(); return; }
      setTool("select");
      return;
    }
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
      if (typing(event.target)) return;
      event.preventDefault();
      event.stopPropagation();
      if (config.editable) undo();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    if (event.key === "?") { event.preventDefault(); help.open ? help.close() : help.showModal(); return; }
    const tools = { a: "assist", p: "polygon", r: "rectangle", e: "ellipse", l: "line", t: "point" };
    const key = event.key.toLowerCase();
    if (tools[key] && config.editable) { event.preventDefault(); setTool(tools[key]); return; }
    if (event.key === "Enter" && tool === "polygon") { event.preventDefault(); finishPolygon(); return; }
    if (tool === "assist" && proposal) {
      if (event.key === "Enter") { event.preventDefault(); acceptProposal(); return; }
      if (event.key === "[" || event.key === "]") { event.preventDefault(); scaleProposal(event.key === "]" ? 1.05 : 1 / 1.05); return; }
    }
    if ((event.key === "Delete" || event.key === "Backspace") && config.editable) {
      if (tool !== "select") return;  // the path editor uses Delete for vertices while drawing
      event.preventDefault();
      deleteSelected();
      return;
    }
    if (key === "n" && config.editable) { event.preventDefault(); submitAndNext(); return; }
    if (key === "0") { viewer.viewport.goHome(); return; }
    if (/^[1-9]$/.test(event.key) && pickValue(Number(event.key))) event.preventDefault();
  }, true);

  window.addEventListener("beforeunload", (event) => {
    if (pendingSaves > 0) { event.preventDefault(); event.returnValue = ""; }
  });

  // ------------------------------------------------------------------ load

  viewer.addHandler("open", applyWindowLevel);
  api("GET", `${config.regionsUrl}?image=${config.imageId}`).then(({ status, data }) => {
    if (status !== 200) { setStatus("error", gettext("Could not load regions")); return; }
    for (const region of data.results) {
      const id = `r${region.id}`;
      remember(id, region);
      anno.addAnnotation(toAnnotation(id, region));
    }
    root.dataset.ready = "true";
    if (config.editable) setStatus("saved", gettext("All changes saved"));
  });
  setTool("select");
})();
