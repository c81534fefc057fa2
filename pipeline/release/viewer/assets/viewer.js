/* Release browser: renders window.OEM_VIEWER (data.js) and window.OEM_WORLD (world.js). No network.
 * State lives in the URL fragment (or query string), e.g. index.html#split=test&class=6, so every view
 * can be linked to and is applied on load: tab, split, class, continent, source, license, region, image,
 * overlay (1/0), opacity (0..1). */
(function () {
  "use strict";
  const D = window.OEM_VIEWER, W = window.OEM_WORLD;
  const LAT_TOP = 84; // pipeline/release/viewer/worldmap.py: x = lon + 180, y = LAT_TOP - lat
  const CONTINENT_COLORS = {
    "Africa": "#e08e0b", "Asia": "#d1495b", "Europe": "#3a6fd8", "North America": "#8e5cc4",
    "South America": "#2a9d8f", "Oceania": "#0aa5c0", "Antarctica": "#7a7a7a",
  };
  const SPLITS = ["train", "val", "test"];
  const REASONS = {
    labelled: "in the labelled subset the selection model was trained on",
    random: "drawn at random from the remaining candidates",
    hard: "among the highest predicted losses of the selection model",
    released: "kept from the previous release",
    all: "the region had no more candidates than its quota",
  };
  const DEFAULTS = { tab: "images", split: "", class: "", continent: "", source: "", license: "", region: "",
    image: "", overlay: "1", opacity: "0.5" };
  const FILTERS = ["split", "class", "continent", "source", "license", "region"];

  const $ = (sel, el) => (el || document).querySelector(sel);
  const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  const esc = (s) => String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g, (c) => ESC[c]);
  const href = (p) => esc(D.root + "/" + String(p).split("/").map(encodeURIComponent).join("/"));
  const pct = (x) => (x * 100 >= 10 ? (x * 100).toFixed(0) : (x * 100).toFixed(1)) + "%";
  const contColor = (c) => CONTINENT_COLORS[c] || "#7a7a7a";
  const classById = new Map(D.classes.map((c) => [String(c.id), c]));

  const images = D.images.map((x) => {
    const r = x.record, px = r.width * r.height;
    const shares = D.classes.map((c) => ({ c, v: (r.class_pixels[String(c.id)] || 0) / px }));
    return Object.assign({}, x, { id: r.id, region: r.region, split: r.split, source: r.source,
      license: r.license, continent: r.continent, shares, present: new Set(shares.filter((s) => s.v > 0).map((s) => String(s.c.id))) });
  });
  const byId = new Map(images.map((im) => [im.id, im]));
  let state = Object.assign({}, DEFAULTS);

  /* ---- state <-> URL ---- */
  function readUrl() {
    state = Object.assign({}, DEFAULTS);
    const p = new URLSearchParams(location.hash.slice(1));
    for (const k of Object.keys(DEFAULTS)) if (p.has(k)) state[k] = p.get(k);
  }
  function queryToHash() { // index.html?split=test works too: its settings move into the fragment
    if (!location.search) return;
    const p = new URLSearchParams(location.hash.slice(1) + "&" + location.search.slice(1)); // fragment wins
    history.replaceState(null, "", location.pathname + "#" + p.toString());
  }
  function urlFor(s) {
    const p = new URLSearchParams();
    for (const k of Object.keys(DEFAULTS)) if (s[k] !== DEFAULTS[k]) p.set(k, s[k]);
    const h = p.toString();
    return h ? "#" + h : "#";
  }
  function go(changes, push) {
    const next = Object.assign({}, state, changes);
    if (push === false) { // overlay and opacity: no new history entry, the gallery stays
      state = next;
      history.replaceState(null, "", urlFor(state));
      syncControls();
    } else {
      location.hash = urlFor(next); // hashchange -> readUrl() -> render()
    }
  }
  function matches(im, ignore) {
    return FILTERS.every((k) => k === ignore || !state[k] ||
      (k === "class" ? im.present.has(state.class) : String(im[k]) === state[k]));
  }

  /* ---- static parts, built once ---- */
  function count(list, key) {
    const m = new Map();
    for (const x of list) m.set(x[key], (m.get(x[key]) || 0) + 1);
    return m;
  }
  function header() {
    const splits = count(images, "split");
    const conts = count(images, "continent");
    const files = [...(D.card ? [["README.md", "release card"]] : []), ["manifest.json", "manifest.json"],
      ["stac/collection.json", "STAC collection"],
      ["stats/README.md", "statistics"], ["rejects.csv", "rejects.csv"], ["pending.csv", "pending.csv"]];
    $("#top").innerHTML = `<h1>Release <b>${esc(D.release)}</b></h1>
      <p class="facts"><span id="n-images">${images.length} images</span> · ${D.regions.length} regions ·
      ${conts.size} continents · ${SPLITS.map((s) => `<span class="split ${s}">${s} ${splits.get(s) || 0}</span>`).join(" ")}
      ${D.previous_release ? ` · continues ${esc(D.previous_release)}` : ""}</p>
      <p class="files">${files.map(([p, t]) => `<a href="${href(p)}">${esc(t)}</a>`).join(" · ")}</p>`;
    $("#tabs").innerHTML = [["images", `Images (${images.length})`], ["rejects", `Rejected (${D.rejects.length})`],
      ["pending", `Pending annotation (${D.pending.length})`]]
      .map(([t, label]) => `<button type="button" data-tab="${t}" id="tab-btn-${t}">${esc(label)}</button>`).join("");
    $("#tabs").addEventListener("click", (e) => {
      const b = e.target.closest("button[data-tab]");
      if (b) go({ tab: b.dataset.tab, image: "" });
    });
  }

  function mapSvg() {
    const [w, h] = W.view;
    const grid = [];
    for (let lon = -150; lon <= 150; lon += 30) grid.push(`M${lon + 180} 0v${h}`);
    for (let lat = 60; lat >= -30; lat -= 30) grid.push(`M0 ${LAT_TOP - lat}h${w}`);
    const pts = D.regions.map((r) => ({ r, x: r.lon + 180, y: LAT_TOP - r.lat, rad: 1.2 + Math.sqrt(r.n) }));
    // a label goes right of its marker unless another marker or the map edge is in the way, then left
    const blocked = (p, dir) => {
      const x0 = p.x + dir * p.rad, x1 = x0 + dir * (1.9 * p.r.name.length + 1);
      return Math.min(x0, x1) < 0 || Math.max(x0, x1) > w || pts.some((q) => q !== p &&
        q.x + q.rad > Math.min(x0, x1) && q.x - q.rad < Math.max(x0, x1) && Math.abs(q.y - p.y) < q.rad + 1.5);
    };
    const labels = D.regions.length <= 40;
    const marks = pts.sort((a, b) => b.r.n - a.r.n).map((p) => { // small markers drawn on top
      const { r, x, y, rad } = p, left = blocked(p, 1) && !blocked(p, -1);
      return `<g class="marker" data-region="${esc(r.name)}" data-n="${r.n}" data-continent="${esc(r.continent)}">
        <circle cx="${x.toFixed(2)}" cy="${y.toFixed(2)}" r="${rad.toFixed(2)}" fill="${contColor(r.continent)}"/>
        ${labels ? `<text x="${(left ? x - rad - 0.8 : x + rad + 0.8).toFixed(2)}" y="${(y + 1.1).toFixed(2)}"
          text-anchor="${left ? "end" : "start"}">${esc(r.name)}</text>` : ""}
        <title>${esc(r.name)} (${esc(r.country)}, ${esc(r.continent)}): ${r.n} images</title></g>`;
    }).join("");
    return `<svg id="map" viewBox="0 0 ${w} ${h}" role="img" aria-label="world map: one marker per region">
      <rect class="sea" width="${w}" height="${h}"/><path class="grid" d="${grid.join("")}"/>
      <path class="land" d="${W.land}"/><path class="borders" d="${W.borders}"/>${marks}</svg>`;
  }
  function mapBox() {
    const conts = [...count(images, "continent")].sort();
    $("#map-box").innerHTML = mapSvg() + `<figcaption><span class="hint">Marker area ∝ images; click a marker
      for its region's gallery.</span> <span id="continent-legend">${conts.map(([c, n]) =>
        `<button type="button" class="cont" data-continent="${esc(c)}"><i style="background:${contColor(c)}"></i>${esc(c)} ${n}</button>`).join("")}</span></figcaption>`;
    $("#map").addEventListener("click", (e) => {
      const g = e.target.closest(".marker");
      if (!g) return;
      go({ region: state.region === g.dataset.region ? "" : g.dataset.region, tab: "images", image: "" });
    });
    $("#continent-legend").addEventListener("click", (e) => {
      const b = e.target.closest("button[data-continent]");
      if (b) go({ continent: state.continent === b.dataset.continent ? "" : b.dataset.continent, region: "" });
    });
  }

  function options(key, values, label) {
    return `<label>${label}<select data-k="${key}"><option value="">all</option>${values
      .map(([v, t]) => `<option value="${esc(v)}">${esc(t)}</option>`).join("")}</select></label>`;
  }
  function side() {
    const sorted = (key) => [...count(images, key)].sort((a, b) => String(a[0]).localeCompare(String(b[0])));
    const classTotals = D.classes.map((c) => {
      let px = 0, all = 0;
      for (const im of images) { px += im.record.class_pixels[String(c.id)] || 0; all += im.record.width * im.record.height; }
      return { c, share: all ? px / all : 0, n: images.filter((im) => im.present.has(String(c.id))).length };
    });
    $("#side").innerHTML = `<div class="filters">
      ${options("split", SPLITS.map((s) => [s, `${s} (${images.filter((i) => i.split === s).length})`]), "Split")}
      ${options("class", classTotals.map((t) => [String(t.c.id), `${t.c.id} ${t.c.name} (${t.n})`]), "Class present")}
      ${options("continent", sorted("continent").map(([c, n]) => [c, `${c} (${n})`]), "Continent")}
      ${options("source", sorted("source").map(([c, n]) => [c, `${c} (${n})`]), "Source")}
      ${options("license", sorted("license").map(([c, n]) => [c, `${c} (${n})`]), "Licence")}
      ${options("region", sorted("region").map(([c, n]) => [c, `${c} (${n})`]), "Region")}
      <button type="button" id="reset">Show all</button></div>
      <div class="overlay-ctl"><label><input type="checkbox" id="overlay"> Label overlay</label>
      <label>opacity <input type="range" id="opacity" min="0" max="1" step="0.05"></label></div>
      <table class="legend" id="legend"><caption>Classes (share of labelled pixels · images with the class)</caption>
      ${classTotals.map((t) => `<tr data-class="${t.c.id}"><td><i class="sw" style="background:#${esc(t.c.color)}"></i></td>
        <td>${t.c.id}</td><td>${esc(t.c.name)}</td><td class="num">${pct(t.share)}</td><td class="num">${t.n}</td></tr>`).join("")}
      <tr><td><i class="sw none"></i></td><td>0</td><td>unlabelled (transparent)</td><td></td><td></td></tr></table>
      <details class="reasons"><summary>Selection reasons</summary>${Object.entries(REASONS)
        .map(([k, v]) => `<p><span class="reason ${k}">${k}</span> ${esc(v)}</p>`).join("")}</details>`;
    $("#side").addEventListener("change", (e) => {
      const k = e.target.dataset.k;
      if (k) go({ [k]: e.target.value, image: "" });
      else if (e.target.id === "overlay") go({ overlay: e.target.checked ? "1" : "0" }, false);
    });
    $("#opacity").addEventListener("input", (e) => go({ opacity: e.target.value }, false));
    $("#reset").addEventListener("click", () => go(Object.fromEntries(FILTERS.map((k) => [k, ""]))));
    $("#legend").addEventListener("click", (e) => {
      const tr = e.target.closest("tr[data-class]");
      if (tr) go({ class: state.class === tr.dataset.class ? "" : tr.dataset.class });
    });
  }

  /* ---- dynamic parts ---- */
  function reasonBadge(im) {
    if (!im.reason) return `<span class="reason none" title="not in the selection record">–</span>`;
    const loss = typeof im.loss === "number" ? ` · loss ${im.loss.toFixed(3)}` : "";
    return `<span class="reason ${esc(im.reason)}" title="selection: ${esc(REASONS[im.reason] || im.reason)}">${esc(im.reason)}${loss}</span>`;
  }
  function shareBar(im) {
    return `<div class="bar" title="class shares">${im.shares.filter((s) => s.v > 0).map((s) =>
      `<span style="width:${(s.v * 100).toFixed(2)}%;background:#${esc(s.c.color)}" title="${esc(s.c.name)} ${pct(s.v)}"></span>`).join("")}</div>`;
  }
  function thumb(im, size) {
    return `<img class="img" src="${esc(im.thumb)}" width="${size}" height="${size}" alt="${esc(im.id)}" loading="lazy">` +
      `<img class="ov" src="${esc(im.overlay)}" width="${size}" height="${size}" alt="" loading="lazy">`;
  }
  function fileLinks(im) {
    const r = im.record;
    return `<a href="${href(r.image)}" title="image tile (COG)">image</a> <a href="${href(r.label)}" title="label tile (COG)">label</a>
      ${im.stac ? `<a href="${href(im.stac)}" title="STAC item">STAC</a>` : ""}
      <a href="${esc(urlFor(Object.assign({}, state, { image: im.id })))}" title="manifest entry">entry</a>`;
  }
  function card(im) {
    const r = im.record;
    return `<article class="card" data-id="${esc(im.id)}" data-split="${esc(im.split)}" data-region="${esc(im.region)}"
      data-source="${esc(im.source)}" data-continent="${esc(im.continent)}">
      <a class="thumb" href="${esc(urlFor(Object.assign({}, state, { image: im.id })))}">${thumb(im, D.thumb_size)}
        <span class="split ${esc(im.split)}">${esc(im.split)}</span></a>
      <div class="meta"><div class="l1"><b class="id">${esc(im.id)}</b> ${reasonBadge(im)}</div>
      <div class="l2" title="GSD · source · segments">${esc(r.gsd)} m · ${esc(r.source)} · ${esc(r.segments_total)} segments</div>
      ${shareBar(im)}<div class="links">${fileLinks(im)}</div></div></article>`;
  }
  function gallery() {
    const shown = images.filter((im) => matches(im));
    const groups = new Map();
    for (const im of shown) {
      if (!groups.has(im.region)) groups.set(im.region, []);
      groups.get(im.region).push(im);
    }
    const regions = new Map(D.regions.map((r) => [r.name, r]));
    const html = [...groups.keys()].sort().map((name) => {
      const list = groups.get(name), r = regions.get(name) || {}, sc = count(list, "split");
      return `<section class="region" data-region="${esc(name)}"><h2><i style="background:${contColor(r.continent)}"></i>
        ${esc(name)} <small>${esc(r.country)} · ${esc(r.continent)} · ${list.length} of ${r.n} images ·
        ${SPLITS.filter((s) => sc.get(s)).map((s) => `${s} ${sc.get(s)}`).join(", ")}</small></h2>
        <div class="grid">${list.map(card).join("")}</div></section>`;
    }).join("");
    const active = FILTERS.filter((k) => state[k]).map((k) =>
      `${k} = ${k === "class" && classById.get(state.class) ? classById.get(state.class).name : state[k]}`);
    $("#gallery").innerHTML = `<p class="status" id="status">${shown.length} of ${images.length} images shown${
      active.length ? " · " + esc(active.join(", ")) : ""}</p>` + (html || `<p class="empty">No image matches these filters.</p>`);
  }
  function syncControls() {
    for (const sel of document.querySelectorAll("#side select")) sel.value = state[sel.dataset.k];
    $("#overlay").checked = state.overlay !== "0";
    $("#opacity").value = state.opacity;
    document.body.classList.toggle("no-overlay", state.overlay === "0");
    document.body.style.setProperty("--ov", state.opacity);
    for (const tr of document.querySelectorAll("#legend tr[data-class]")) tr.classList.toggle("sel", tr.dataset.class === state.class);
    for (const g of document.querySelectorAll("#map .marker")) {
      g.classList.toggle("sel", g.dataset.region === state.region);
      g.classList.toggle("dim", !images.some((im) => im.region === g.dataset.region && matches(im, "region")));
    }
    for (const b of document.querySelectorAll("#continent-legend button")) b.classList.toggle("sel", b.dataset.continent === state.continent);
    for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === state.tab);
    for (const t of ["images", "rejects", "pending"]) $("#tab-" + t).hidden = state.tab !== t;
  }

  function table(rows, cols, empty) {
    if (!rows.length) return `<p class="empty">${esc(empty)}</p>`;
    return `<table class="rows"><thead><tr>${cols.map((c) => `<th>${esc(c[1])}</th>`).join("")}</tr></thead><tbody>${rows
      .map((r) => `<tr>${cols.map((c) => `<td class="col-${c[0]}">${c[2] ? c[2](r) : esc(r[c[0]])}</td>`).join("")}</tr>`).join("")}</tbody></table>`;
  }
  function rejectsTab() {
    const stages = [...count(D.rejects, "stage")].map(([s, n]) => `<span class="chip">${esc(s)} ${n}</span>`).join(" ");
    $("#tab-rejects").innerHTML = `<h2>Rejected (${D.rejects.length})</h2><p>What the build left out, and why
      (<a href="${href("rejects.csv")}">rejects.csv</a>). ${stages}</p>` + table(D.rejects, [["stage", "stage"],
      ["source", "source"], ["scene_id", "scene"], ["file", "file"], ["reason", "reason"]], "Nothing was rejected.");
    // each row's own reason (pending.csv): no 8-class labels in its source, or an unfinished annotation in done/
    const pending = D.pending.map((p) => Object.assign({}, p, { reason: p.reason || "awaiting annotation" }));
    $("#tab-pending").innerHTML = `<h2>Pending annotation (${D.pending.length})</h2><p>Selected tiles without
      usable 8-class labels yet; they are not released until annotated (<a href="${href("pending.csv")}">pending.csv</a>;
      pre-annotations in the annotation folder's <code>todo/</code>).</p>` + table(pending, [["region", "region"],
      ["key", "key"], ["source", "source"], ["source_scene_id", "scene"], ["tile", "tile"], ["reason", "reason"],
      ["todo", "pre-annotation", (r) => r.todo ? `todo/${esc(r.todo)}` : "none exported"]], "No tile is waiting for annotation.");
  }

  function detail() {
    const box = $("#detail"), im = byId.get(state.image);
    box.hidden = !im;
    if (!im) { box.innerHTML = ""; return; }
    const r = im.record, list = images.filter((x) => matches(x)), i = list.indexOf(im);
    const rows = [["region", `${r.region} · ${r.country} (${r.country_code}) · ${r.continent}`],
      ["split", r.split], ["source", `${r.source} (${r.source_kind}) · scene ${r.source_scene_id} · tile ${r.tile}`],
      ["licence", `${r.license} · ${r.attribution}`], ["GSD", `${r.gsd} m (native ${r.native_gsd} m, ${r.native_crs})`],
      ["grid", `${r.width}×${r.height} px · ${r.crs}`], ["segments", `${r.segments_total}`],
      ["unlabelled", `${r.unlabelled_pixels} px`], ["key", r.key || "–"], ["acquired", r.acquired || "–"]];
    box.innerHTML = `<div class="backdrop" data-close="1"></div><div class="panel" role="dialog" aria-label="${esc(r.id)}">
      <button type="button" class="close" data-close="1" title="close (Esc)">×</button>
      <h2>${esc(r.id)} <span class="split ${esc(r.split)}">${esc(r.split)}</span> ${reasonBadge(im)}</h2>
      <p class="nav">${i > 0 ? `<a href="${esc(urlFor(Object.assign({}, state, { image: list[i - 1].id })))}">← ${esc(list[i - 1].id)}</a>` : ""}
        ${i >= 0 && i < list.length - 1 ? `<a href="${esc(urlFor(Object.assign({}, state, { image: list[i + 1].id })))}">${esc(list[i + 1].id)} →</a>` : ""}</p>
      <div class="body"><div class="thumb big">${thumb(im, 2 * D.thumb_size)}</div><div>
      <table class="facts">${rows.map(([k, v]) => `<tr><th>${k}</th><td>${esc(v)}</td></tr>`).join("")}</table>
      <table class="classes"><tr><th></th><th>class</th><th>share</th><th>pixels</th><th>segments</th></tr>${im.shares.map((s) =>
        `<tr><td><i class="sw" style="background:#${esc(s.c.color)}"></i></td><td>${s.c.id} ${esc(s.c.name)}</td><td class="num">${pct(s.v)}</td>
        <td class="num">${r.class_pixels[String(s.c.id)] || 0}</td><td class="num">${(r.segments || {})[String(s.c.id)] || 0}</td></tr>`).join("")}</table>
      <p class="links">${fileLinks(im)} <a href="${href("manifest.json")}">manifest.json</a></p></div></div>
      <h3>Manifest entry</h3><pre id="entry">${esc(JSON.stringify(r, null, 1))}</pre></div>`;
  }

  function render() {
    syncControls();
    gallery();
    detail();
    document.title = `${D.release} · release browser`;
  }

  header();
  mapBox();
  side();
  rejectsTab();
  $("#detail").addEventListener("click", (e) => { if (e.target.dataset.close) go({ image: "" }); });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && state.image) go({ image: "" });
    if (state.image && (e.key === "ArrowLeft" || e.key === "ArrowRight")) {
      const a = document.querySelectorAll("#detail .nav a");
      const t = e.key === "ArrowLeft" ? [...a].find((x) => x.textContent.startsWith("←")) : [...a].find((x) => x.textContent.endsWith("→"));
      if (t) location.hash = t.getAttribute("href");
    }
  });
  window.addEventListener("hashchange", () => { readUrl(); render(); });
  queryToHash();
  readUrl();
  render();
})();
