/* Live page behaviour around htmx + the ws extension:
   - reconnect from the last seq this page has applied (never replays what it has);
   - apply small signals (moves, colours, presence, timer, vote progress) and refetch the stage region
     after structural events (phase changes, reveals);
   - drag notes with a pointer or move them with the keyboard;
   - show the connection state. Everything sent is checked again by the server. */
(function () {
  "use strict";
  var socket = null;
  var body = document.body;

  function currentSeq() {
    var el = document.getElementById("live-seq");
    return el ? el.getAttribute("data-seq") : null;
  }

  // The ws extension keeps the URL it first read; resume from what we have applied.
  document.addEventListener("DOMContentLoaded", function () {
    if (!window.htmx) return;
    htmx.createWebSocket = function (url) {
      var seq = currentSeq();
      if (seq !== null) url = url.replace(/([?&]last_seq=)\d+/, "$1" + seq);
      return new WebSocket(url);
    };
  });

  function setConnection(state, text) {
    var el = document.getElementById("connection");
    if (!el) return;
    el.setAttribute("data-state", state);
    el.textContent = text;
  }

  document.addEventListener("htmx:wsOpen", function (evt) {
    socket = evt.detail.socketWrapper;
    setConnection("open", "Connected");
  });
  // The ws extension reconnects only after these close codes (a dropped network, a
  // restarting server); after others (removed: 4003, refused as abuse) it stays closed.
  var RETRIED = [1006, 1011, 1012, 1013];
  document.addEventListener("htmx:wsClose", function (evt) {
    var code = evt.detail && evt.detail.event ? evt.detail.event.code : 1006;
    if (code === 4003) {
      setConnection("removed", "You were removed from this workshop");
    } else if (RETRIED.indexOf(code) >= 0) {
      setConnection("closed", "Reconnecting…");
    } else {
      setConnection("closed", "Disconnected. Reload the page to continue.");
    }
  });
  document.addEventListener("htmx:wsError", function () {
    setConnection("closed", "Reconnecting…");
  });
  // Forms reset after sending (a new note), and no HEADERS noise for the server.
  document.addEventListener("htmx:wsConfigSend", function (evt) {
    var params = evt.detail.parameters;
    if (params && params.HEADERS) delete params.HEADERS;
    var form = evt.detail.elt && evt.detail.elt.closest && evt.detail.elt.closest("form[data-reset-on-send]");
    if (form) setTimeout(function () { form.reset(); }, 0);
  });

  function send(message) {
    if (socket) socket.send(JSON.stringify(message));
  }

  // While the stage is being fetched (after a phase change, a reveal...), the room's
  // messages wait: the stage on the page may lack what they change (the new phase's
  // cards or notes), and the fetched one may have been rendered before them. Once the
  // new stage is in, they are applied in order. Each is idempotent (counts are
  // totals, an appended element replaces its copy), so one that the fetched stage
  // already shows changes nothing.
  var fetching = 0;
  var held = [];
  document.addEventListener("htmx:wsBeforeMessage", function (evt) {
    if (!fetching) return;
    evt.preventDefault();
    held.push(evt.detail.message);
  });

  function applyHeld() {
    var messages = held;
    held = [];
    messages.forEach(function (message) {
      htmx.swap(document.body, message, { swapStyle: "none" });
    });
    if (messages.length) applySignals();
  }

  function refreshStage() {
    var url = body.getAttribute("data-stage-url");
    var stage = document.getElementById("stage");
    if (!url || !stage || !window.htmx) return;
    var active = document.activeElement && document.activeElement.id;
    fetching += 1;
    var finished = false;
    var done = function () {
      if (finished) return;
      finished = true;
      clearTimeout(limit);
      fetching -= 1;
      if (!fetching) applyHeld();
    };
    // A fetch that hangs holds the room's messages for 5 s at most.
    var limit = setTimeout(done, 5000);
    htmx.ajax("GET", url, { target: "#stage", swap: "innerHTML" }).then(function () {
      layout();
      var again = active && document.getElementById(active);
      if (again) again.focus();
    }).then(done, done);
  }

  function noteEl(id) { return document.getElementById("note-" + id); }

  function place(note) {
    var canvas = note.closest(".canvas");
    if (!canvas || window.matchMedia("(max-width: 40rem)").matches) {
      note.style.left = ""; note.style.top = ""; return;
    }
    var x = parseFloat(note.getAttribute("data-x")) || 0;
    var y = parseFloat(note.getAttribute("data-y")) || 0;
    note.style.left = (x * 80) + "%";
    note.style.top = (y * 80) + "%";
  }

  var lastSpot = "";
  function spotlight() {
    var stage = document.querySelector(".stage");
    document.querySelectorAll(".spotlit").forEach(function (el) { el.classList.remove("spotlit"); });
    var spot = stage && stage.getAttribute("data-spotlight");
    if (!spot) { lastSpot = ""; return; }
    var el = document.getElementById(spot) || document.querySelector('[data-card="' + spot.replace(/^card-/, "") + '"]');
    if (!el) return;
    el.classList.add("spotlit");
    if (spot !== lastSpot) { el.scrollIntoView({ block: "center" }); lastSpot = spot; }
  }

  function layout() {
    spotlight();
    document.querySelectorAll(".note").forEach(place);
    document.querySelectorAll(".bar[data-share]").forEach(function (bar) {
      bar.style.width = (parseFloat(bar.getAttribute("data-share")) * 10) + "rem";
    });
    document.querySelectorAll(".note").forEach(function (n) {
      var g = n.getAttribute("data-group");
      var label = g && document.getElementById("group-label-" + g);
      n.setAttribute("data-group-label", label ? label.textContent : "");
    });
  }

  var signals = {
    refresh: function (s) {
      if (s.participant && s.participant === body.getAttribute("data-me")) {
        setConnection("removed", "You were removed from this workshop");
        return;
      }
      refreshStage();
    },
    move: function (s) {
      var note = noteEl(s.note);
      if (!note || note.getAttribute("data-dragging") === "true") return;
      note.setAttribute("data-x", s.x); note.setAttribute("data-y", s.y);
      if (s.area && s.area !== note.getAttribute("data-area")) {
        var fn = note.closest(".board") && note.closest(".board").getAttribute("data-function");
        var target = document.getElementById("area-notes-" + fn + "-" + s.area);
        if (target) { target.appendChild(note); note.setAttribute("data-area", s.area); }
      }
      place(note);
    },
    colour: function (s) {
      var note = noteEl(s.note);
      if (note) {
        note.setAttribute("data-colour", s.colour);
        var name = note.querySelector(".colour-name");
        if (name) name.textContent = s.colour;
      }
    },
    presence: function (s) {
      var li = document.getElementById("participant-" + s.participant);
      if (li) {
        li.setAttribute("data-presence", s.status);
        var p = li.querySelector(".presence");
        if (p) p.textContent = s.status;
      }
    },
    timer: function (s) {
      var el = document.getElementById("timer");
      if (!el) return;
      el.setAttribute("data-running", s.running);
      el.setAttribute("data-ends-at", s["endsAt"] || "");
      el.setAttribute("data-remaining", s.remaining || "");
      tick();
    },
    progress: function (s) {
      // A count for a card or round this page does not show (say its stage is still
      // being fetched after a phase change): the fetched stage has the count already.
      var el = document.getElementById(s.target);
      if (el) el.textContent = s.text;
    },
    mine: function (s) {
      var note = noteEl(s.note);
      if (note) note.classList.add("mine");
    }
  };

  function applySignals() {
    var box = document.getElementById("live-signals");
    if (!box) return;
    var items = box.querySelectorAll("template.signal");
    items.forEach(function (t) {
      var handler = signals[t.dataset.kind];
      if (handler) handler(t.dataset);
      t.remove();
    });
    layout();
  }
  // An appended element (a note, a person) replaces any copy already on the page, so
  // an event that arrives for something the page already shows never doubles it.
  document.addEventListener("htmx:oobBeforeSwap", function (evt) {
    var fragment = evt.detail && evt.detail.fragment;
    if (!fragment || !fragment.children) return;
    Array.prototype.forEach.call(fragment.children, function (child) {
      var old = child.id && document.getElementById(child.id);
      if (old && old !== evt.detail.target) old.remove();
    });
  });
  document.addEventListener("htmx:wsAfterMessage", applySignals);
  document.addEventListener("htmx:afterSettle", layout);
  document.addEventListener("DOMContentLoaded", layout);

  function tick() {
    var el = document.getElementById("timer");
    if (!el) return;
    if (el.getAttribute("data-running") === "true") {
      var left = Math.max(0, Math.round((Date.parse(el.getAttribute("data-ends-at")) - Date.now()) / 1000));
      el.textContent = "Time left: " + Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
    } else if (el.getAttribute("data-remaining")) {
      var r = parseInt(el.getAttribute("data-remaining"), 10);
      el.textContent = "Timer paused at " + Math.floor(r / 60) + ":" + String(r % 60).padStart(2, "0");
    } else {
      el.textContent = "";
    }
  }
  setInterval(tick, 1000);

  // Pointer drag: previews while moving (not stored), one stored move on release.
  var drag = null;
  var lastPreview = 0;
  function clamp(v) { return Math.min(1, Math.max(0, v)); }
  function positionIn(canvas, evt) {
    var r = canvas.getBoundingClientRect();
    return { x: clamp((evt.clientX - r.left) / r.width), y: clamp((evt.clientY - r.top) / r.height) };
  }
  document.addEventListener("pointerdown", function (evt) {
    var note = evt.target.closest && evt.target.closest(".canvas .note");
    if (!note || evt.target.closest("button, summary, details, input, select, textarea, a")) return;
    drag = { note: note, id: note.getAttribute("data-note") };
    note.setAttribute("data-dragging", "true");
    note.setPointerCapture(evt.pointerId);
  });
  document.addEventListener("pointermove", function (evt) {
    if (!drag) return;
    var canvas = drag.note.closest(".canvas");
    var p = positionIn(canvas, evt);
    drag.note.setAttribute("data-x", p.x); drag.note.setAttribute("data-y", p.y);
    place(drag.note);
    var now = Date.now();
    if (now - lastPreview > 50) {
      lastPreview = now;
      send({ type: "note.drag", note_id: drag.id, x: p.x, y: p.y });
    }
  });
  document.addEventListener("pointerup", function (evt) {
    if (!drag) return;
    var note = drag.note;
    note.removeAttribute("data-dragging");
    var under = document.elementFromPoint(evt.clientX, evt.clientY);
    var canvas = (under && under.closest && under.closest(".canvas")) || note.closest(".canvas");
    var p = positionIn(canvas, evt);
    send({ type: "note.move", note_id: drag.id, x: p.x, y: p.y, area: canvas.getAttribute("data-area") });
    drag = null;
  });

  // Keyboard: arrows nudge a focused note; Shift+Left/Right moves it between areas.
  document.addEventListener("keydown", function (evt) {
    var note = evt.target;
    if (!note.classList || !note.classList.contains("note")) return;
    var keys = { ArrowLeft: [-0.05, 0], ArrowRight: [0.05, 0], ArrowUp: [0, -0.05], ArrowDown: [0, 0.05] };
    if (!keys[evt.key]) return;
    evt.preventDefault();
    var id = note.getAttribute("data-note");
    var x = parseFloat(note.getAttribute("data-x")) || 0;
    var y = parseFloat(note.getAttribute("data-y")) || 0;
    var area = note.getAttribute("data-area");
    if (evt.shiftKey && (evt.key === "ArrowLeft" || evt.key === "ArrowRight")) {
      var areas = Array.prototype.map.call(document.querySelectorAll(".area"), function (a) { return a.getAttribute("data-area"); });
      var i = areas.indexOf(area) + (evt.key === "ArrowRight" ? 1 : -1);
      if (i < 0 || i >= areas.length) return;
      send({ type: "note.move", note_id: id, x: x, y: y, area: areas[i] });
      return;
    }
    send({ type: "note.move", note_id: id, x: clamp(x + keys[evt.key][0]), y: clamp(y + keys[evt.key][1]), area: area });
  });

  // A phone that slept may have missed the end of a phase: check when it wakes.
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") refreshStage();
  });
})();
