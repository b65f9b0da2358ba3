// photon's few behaviours that need a script; every page works without it.
"use strict";

// Search by a picture: choosing, dropping or pasting one sends the search form whole
// (a POST the server answers with the search's address).
function initUpload() {
  const form = document.getElementById("search");
  const input = document.getElementById("upload");
  if (!form || !input) return;
  const send = (files) => {
    const picture = Array.from(files || []).find((f) => f.type.startsWith("image/"));
    if (!picture) return false;
    const chosen = new DataTransfer();
    chosen.items.add(picture);
    input.files = chosen.files;
    form.requestSubmit();
    return true;
  };
  // A chosen file: its change must not also start htmx's search as one types.
  input.addEventListener("change", (event) => {
    event.stopPropagation();
    if (input.files.length) form.requestSubmit();
  });
  document.addEventListener("dragover", (event) => {
    if (event.dataTransfer && Array.from(event.dataTransfer.types).includes("Files")) {
      event.preventDefault();
      document.body.classList.add("dropping");
    }
  });
  document.addEventListener("dragleave", () => document.body.classList.remove("dropping"));
  document.addEventListener("drop", (event) => {
    document.body.classList.remove("dropping");
    if (event.dataTransfer && send(event.dataTransfer.files)) event.preventDefault();
  });
  document.addEventListener("paste", (event) => {
    if (event.clipboardData && send(event.clipboardData.files)) event.preventDefault();
  });
}

// ←/→ on a picture's page go through the results it was opened from; Escape goes back.
function initKeys() {
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (target instanceof HTMLElement && target.closest("input, textarea, select")) return;
    if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    const rel = { ArrowLeft: "prev", ArrowRight: "next", Escape: "up" }[event.key];
    const link = rel && document.querySelector(`.pager a[rel="${rel}"]`);
    if (link) {
      event.preventDefault();
      link.click();
    }
  });
}

// Shift-click selects pictures in the grid: the first one, then every one between it
// and the next one shift-clicked. A plain click still opens the picture.
function initSelection() {
  let anchor = null;
  const cards = () => Array.from(document.querySelectorAll("#grid .card"));
  const update = () => {
    const bar = document.getElementById("selection");
    if (!bar) return;
    const count = document.querySelectorAll("#grid .card.selected").length;
    document.getElementById("selected-count").textContent = String(count);
    bar.hidden = count === 0;
  };
  document.addEventListener("click", (event) => {
    const card = event.target instanceof Element && event.target.closest("#grid .card");
    if (card && event.shiftKey) {
      event.preventDefault();
      const all = cards();
      if (anchor && all.includes(anchor) && anchor !== card) {
        const [from, to] = [all.indexOf(anchor), all.indexOf(card)].sort((a, b) => a - b);
        all.slice(from, to + 1).forEach((c) => c.classList.add("selected"));
      } else {
        card.classList.toggle("selected");
      }
      anchor = card;
      update();
      return;
    }
    const button = event.target instanceof Element && event.target.closest("[data-selection]");
    if (!button) return;
    const selected = Array.from(document.querySelectorAll("#grid .card.selected"));
    if (button.dataset.selection === "copy") {
      copy(selected.map((c) => c.dataset.path).join("\n"));
    } else {
      selected.forEach((c) => c.classList.remove("selected"));
      anchor = null;
    }
    update();
  });
  // New results replace the grid: the selection goes with the old one.
  document.addEventListener("htmx:afterSwap", update);
}

function copy(text) {
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text);
    return;
  }
  const area = document.createElement("textarea");  // plain http on another host
  area.value = text;
  document.body.append(area);
  area.select();
  document.execCommand("copy");
  area.remove();
}

initUpload();
initKeys();
initSelection();
