// counsel's web app: students sign in, pick a counselor, talk, review past sessions; staff on
// duty also get the crisis review page (#/staff), live.
// Plain modules, no build step. Every piece of user or transcript text is inserted with
// textContent (never innerHTML) so nothing a student or the model says can run as markup.

import { counselorIcon } from "./icons.js";

const API = "/api/v1";
const app = document.getElementById("app");
const crisisPanel = document.getElementById("crisis");
// Students who ask their system for less motion get a still orb and avatar (WCAG 2.3.3).
const reducedMotion = matchMedia("(prefers-reduced-motion: reduce)");

// ---------------------------------------------------------------------------------------------
// HTTP

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `request failed (${status})`);
    this.status = status;
    this.code = body && body.code;
  }
}

async function api(path, { method = "GET", body, headers = {} } = {}) {
  const init = { method, headers: { ...headers }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path.startsWith("/") ? path : `${API}/${path}`, init);
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401 && !path.includes("auth/login")) {
      state.user = null;
      location.hash = "#/login";
    }
    throw new ApiError(response.status, data);
  }
  return data;
}

// ---------------------------------------------------------------------------------------------
// Small DOM helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else if (value !== false && value != null) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Replaces the page; focus moves to it and the window title names it, so a screen reader
// announces where the student now is.
function show(...nodes) {
  app.replaceChildren(...nodes);
  const heading = app.querySelector("h1");
  document.title = heading ? `${heading.textContent} · counsel` : "counsel";
  // Focus without scrolling past the header: a tall page would otherwise open below the nav.
  app.focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

// The skip link moves focus past the header without touching the route (its #app would).
document.getElementById("skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  app.focus();
});

// The crisis resources stay on screen, with focus, until the student closes them.
function showCrisisPanel() {
  if (!crisisPanel.hidden) return;
  crisisPanel.hidden = false;
  crisisPanel.focus();
}

function hideCrisisPanel() {
  crisisPanel.hidden = true;
}

document.getElementById("crisis-dismiss").addEventListener("click", () => {
  hideCrisisPanel();
  app.focus();
});

function formatDuration(seconds) {
  if (seconds == null) return "in progress";
  const m = Math.floor(seconds / 60);
  const s = seconds % 60;
  return m ? `${m} min ${s} s` : `${s} s`;
}

function formatDate(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

// ---------------------------------------------------------------------------------------------
// State and routing

const state = { user: null, call: null, staffSocket: null };

async function currentUser() {
  if (state.user) return state.user;
  try {
    state.user = await api("auth/me");
  } catch {
    state.user = null;
  }
  return state.user;
}

function renderNav() {
  const nav = document.getElementById("nav");
  nav.hidden = !state.user;
  document.getElementById("whoami").textContent = state.user ? state.user.username : "";
  document.getElementById("staff-link").hidden = !isStaff();
  const here = location.hash.replace(/\?.*$/, "") || "#/";
  for (const link of nav.querySelectorAll("a")) {
    const current = link.getAttribute("href") === here || (here.startsWith("#/sessions/") && link.getAttribute("href") === "#/sessions");
    if (current) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
}

function isStaff() {
  return Boolean(state.user && state.user.role === "staff");
}

document.getElementById("logout").addEventListener("click", async () => {
  await hangUp();
  await api("auth/logout", { method: "POST" }).catch(() => {});
  state.user = null;
  closeStaffFeed();
  hideCrisisPanel();
  location.hash = "#/login";
});

async function route() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  if (parts[0] !== "call") await hangUp();
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
  if (parts[0] !== "staff") closeStaffFeed();
  if (parts[0] !== "login" && !(await currentUser())) {
    location.hash = "#/login";
    return;
  }
  renderNav();
  const params = new URLSearchParams(query || "");
  switch (parts[0]) {
    case "login": return loginView();
    case "call": return callView(params.get("category"), params.get("mode") || "voice");
    case "sessions": return parts[1] ? sessionView(parts[1], params) : historyView(params);
    case "staff": return isStaff() ? staffView(params) : dashboardView();
    default: return dashboardView();
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);

// ---------------------------------------------------------------------------------------------
// Sign in

function loginView() {
  // A shared computer's next student must not see that the last one was given crisis help.
  hideCrisisPanel();
  const error = el("p", { class: "error", role: "alert" });
  const username = el("input", { name: "username", autocomplete: "username", placeholder: "\\COLLEGE\\jdoe", required: true, "aria-describedby": "username-hint" });
  const password = el("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const submit = el("button", { type: "submit" }, "Sign in");
  const form = el("form", { class: "card login", onsubmit: async (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.textContent = "";
    try {
      const result = await api("auth/login", { method: "POST", body: { username: username.value.trim(), password: password.value } });
      state.user = result.user;
      location.hash = result.user.role === "staff" ? "#/staff" : "#/";
    } catch (e) {
      error.textContent = e.message;
    } finally {
      submit.disabled = false;
    }
  } },
    el("h1", {}, "Sign in"),
    el("p", { class: "muted", id: "username-hint" }, "Use your institutional account, written as \\DOMAIN\\username."),
    el("label", {}, "Username", username),
    el("label", {}, "Password", password),
    error,
    submit,
  );
  show(form);
  username.focus();
}

// ---------------------------------------------------------------------------------------------
// Counselors

async function dashboardView() {
  const [categories, notice] = await Promise.all([api("counselors/categories"), api("notice")]);
  const callButtons = [];
  const cards = categories.map((c) => {
    const nameId = `counselor-${c.id}`;
    const voice = el("button", { "aria-describedby": nameId, disabled: !notice.accepted_at, onclick: () => { location.hash = `#/call?category=${encodeURIComponent(c.name)}&mode=voice`; } }, "Voice call");
    const video = el("button", { class: "secondary", "aria-describedby": nameId, disabled: !notice.accepted_at, onclick: () => { location.hash = `#/call?category=${encodeURIComponent(c.name)}&mode=video`; } }, "Video call");
    callButtons.push(voice, video);
    return el("article", { class: "card counselor", "aria-labelledby": nameId },
      counselorIcon(c.icon_name),
      el("h2", { id: nameId }, c.name),
      el("p", { class: "muted" }, c.description),
      el("div", { class: "actions" }, voice, video));
  });
  const reminder = el("p", { class: "notice" },
    el("strong", {}, "Remember: "),
    "your counselor is an AI. Only you can read your transcripts. If you are in danger, call 911; for crisis support call or text 988 at any time.");
  const top = notice.accepted_at ? reminder : noticeCard(notice, () => {
    top.replaceWith(reminder);
    for (const b of callButtons) b.disabled = false;
    if (callButtons[0]) callButtons[0].focus();
  });
  show(el("h1", {}, "Who would you like to talk to?"), top, el("div", { class: "grid" }, cards));
}

// The first-visit explanation, accepted once per account (stored and audited by the server).
// The server words it from its configuration; a new wording is asked for again.
function noticeCard(notice, onAccepted) {
  const error = el("p", { class: "error", role: "alert" });
  const understood = el("input", { type: "checkbox", id: "notice-understood", name: "understood" });
  const submit = el("button", { type: "submit", disabled: true }, "Continue");
  understood.addEventListener("change", () => { submit.disabled = !understood.checked; });
  const card = el("section", { class: "card notice-card", "aria-labelledby": "notice-title" },
    el("h2", { id: "notice-title" }, "Before your first session"),
    notice.sections.map((s) => el("div", { class: "notice-section" }, el("h3", {}, s.heading), el("p", {}, s.text))),
    el("form", { class: "consent", onsubmit: async (event) => {
      event.preventDefault();
      if (!understood.checked) return;
      submit.disabled = true;
      error.textContent = "";
      try {
        await api("notice/acceptance", { method: "POST", body: { version: notice.version } });
        onAccepted();
      } catch (e) {
        // NOTICE_001: the wording changed while the page was open; show the new one.
        if (e.code === "NOTICE_001") { route(); return; }
        error.textContent = e.message;
        submit.disabled = false;
      }
    } },
      el("label", { class: "check", for: "notice-understood" }, understood, el("span", {}, "I understand")),
      submit,
      error));
  return card;
}

// ---------------------------------------------------------------------------------------------
// A call

async function hangUp() {
  const call = state.call;
  if (!call) return;
  state.call = null;
  call.closed = true;
  clearTimeout(call.retry);
  clearTimeout(call.linkNotice);
  if (call.socket) call.socket.close();
  if (call.peer) call.peer.close();
  if (call.microphone) call.microphone.getTracks().forEach((t) => t.stop());
  if (call.audioContext) call.audioContext.close();
  if (call.sessionId) {
    await api(`${call.mode}/end-session`, { method: "POST", body: { session_id: call.sessionId } }).catch(() => {});
  }
}

async function callView(category, mode) {
  await hangUp();
  const call = { mode, closed: false, lines: new Map() };
  state.call = call;

  const statusText = el("span", { class: "pill", role: "status" }, "Connecting…");
  const quality = el("span", { class: "pill", hidden: true });
  const link = el("span", { class: "link-state", role: "status", "data-connection": "live" });
  // A polite log: each final line is announced once, when it is added (interim lines are
  // hidden from screen readers and replaced by a new node when final; see showLine).
  const transcript = el("div", { class: "transcript", role: "log", "aria-live": "polite", "aria-labelledby": "transcript-title", tabindex: 0 });
  const face = mode === "video" ? avatar() : orb();
  const mute = el("button", { class: "secondary", disabled: true, onclick: () => {
    const track = call.microphone && call.microphone.getAudioTracks()[0];
    if (!track) return;
    track.enabled = !track.enabled;
    mute.textContent = track.enabled ? "Mute" : "Unmute";
  } }, "Mute");
  const end = el("button", { class: "danger", onclick: async () => {
    const id = call.sessionId;
    await hangUp();
    // The session page offers the (skippable) rating once the call has ended.
    location.hash = id ? `#/sessions/${id}?rate=1` : "#/";
  } }, "End session");
  const player = el("audio", { autoplay: true });
  // When the counselor cannot be reached, or the call's connection is lost for good: a plain
  // message (announced: the alert is on the page from the start, empty) and a way to start again.
  const problemText = el("p", { class: "call-problem-text", role: "alert" });
  const again = el("button", { type: "button", hidden: true, onclick: () => callView(category, mode) }, "Start again");
  const problem = el("div", { class: "call-problem" }, problemText, again);

  // Captions first: the transcript larger than the call visual, for students who are hard of
  // hearing; the choice is remembered on this device.
  const layout = el("div", { class: "call" });
  const captions = el("button", { type: "button", class: "secondary captions-toggle", "aria-pressed": "false", onclick: () => {
    setCaptionsFirst(captions.getAttribute("aria-pressed") !== "true");
  } }, "Captions first");
  const setCaptionsFirst = (on) => {
    layout.classList.toggle("captions-first", on);
    captions.setAttribute("aria-pressed", String(on));
    try { localStorage.setItem("counsel.captionsFirst", on ? "1" : "0"); } catch { /* private mode */ }
  };
  layout.append(
    el("section", { class: "card stage", "aria-label": "Call" }, face.node, el("div", { class: "status" }, statusText, quality, link), problem, el("div", { class: "status call-controls" }, mute, end), player),
    el("section", { class: "card captions" }, el("div", { class: "captions-head" }, el("h2", { id: "transcript-title" }, "Transcript"), captions), transcript));
  let captionsFirst = false;
  try { captionsFirst = localStorage.getItem("counsel.captionsFirst") === "1"; } catch { /* private mode */ }
  setCaptionsFirst(captionsFirst);
  show(el("h1", {}, `${category} counselor · ${mode}`), layout);

  const setStatus = (text) => { statusText.textContent = text; };
  // Ends what is left of this call (the session, if one was opened, is ended on the server) and
  // says what happened, without internal detail; Start again opens a fresh session.
  const fail = (status, text) => {
    if (call.closed || state.call !== call) return;
    setStatus(status);
    mute.disabled = true;
    hangUp();
    problemText.textContent = text;
    again.hidden = false;
    again.focus();
  };
  // The transcript socket's state, said aloud when it changes; empty while all is well.
  const setLink = (connection, text) => {
    link.dataset.connection = connection;
    link.replaceChildren(text ? el("span", { class: `pill ${connection === "live" ? "good" : "poor"}` }, text) : "");
    clearTimeout(call.linkNotice);
    if (connection === "live") call.linkNotice = setTimeout(() => link.replaceChildren(), 4000);
  };

  // One node per line, in place: an interim line is updated as it grows; its final version
  // replaces it with a new node (so the log announces it once, complete); a final line that is
  // already shown is not shown twice.
  function showLine(message) {
    const key = `${message.speaker}:${message.sequence}`;
    const shown = call.lines.get(key);
    if (shown && shown.final) return;
    const text = el("span", { class: "text" }, message.text);
    if (shown && !message.is_final) {
      shown.node.querySelector(".text").replaceWith(text);
      return;
    }
    const node = el("div", { class: `line ${message.speaker}${message.is_final ? "" : " interim"}`, "data-sequence": message.sequence, "aria-hidden": message.is_final ? null : "true" },
      el("span", { class: "who" }, message.speaker === "student" ? "You" : "Counselor"), text);
    if (shown) shown.node.replaceWith(node); else transcript.append(node);
    call.lines.set(key, { node, final: message.is_final });
    transcript.scrollTop = transcript.scrollHeight;
  }

  try {
    const room = await api(`${mode}/create-room`, { method: "POST", body: { counselor_category: category } });
    if (call.closed) return;
    call.sessionId = room.session_id;

    // The transcript socket comes back after a network blip, 1, 2, 4… (at most 10) seconds
    // later, resuming after the last final line it delivered: the server sends only what came
    // after that line, so none is shown twice or missed.
    let retries = 0;
    const connect = () => {
      const url = new URL(room.websocket_url, location.href);
      if (call.lastFinal != null) url.searchParams.set("after", String(call.lastFinal));
      const socket = new WebSocket(url.href.replace(/^http/, "ws"));
      call.socket = socket;
      socket.onopen = () => {
        if (retries > 0) setLink("live", "Transcript reconnected");
        retries = 0;
      };
      socket.onmessage = (event) => {
        const message = JSON.parse(event.data);
        switch (message.type) {
          case "transcript":
            showLine(message);
            if (message.is_final) call.lastFinal = message.sequence;
            break;
          case "crisis_alert": showCrisisPanel(); break;
          case "connection_quality": quality.hidden = false; quality.className = `pill ${message.quality}`; quality.textContent = `Connection: ${message.quality}`; break;
          case "bot_state": setStatus({ listening: "Listening", thinking: "Thinking…", speaking: "Speaking" }[message.state] || message.state); break;
          case "session_ended":
            call.ended = true;
            mute.disabled = true;
            setStatus(message.reason === "server_shutdown" ? "Session ended: the service is restarting. Your transcript is saved; start a new session in a minute." : "Session ended");
            break;
        }
      };
      socket.onclose = (event) => {
        if (call.closed || call.ended || call.socket !== socket) return;
        // 1008: the account was blocked or signed out; the server has revoked this page's token.
        if (event.code === 1008) {
          setStatus(event.reason === "account blocked" ? "Account blocked" : "Signed out");
          mute.disabled = true;
          return;
        }
        setLink("reconnecting", "Transcript connection lost, reconnecting…");
        call.retry = setTimeout(connect, Math.min(1000 * 2 ** retries, 10_000));
        retries += 1;
      };
    };
    connect();

    if (room.transport !== "local") {
      // Daily rooms open in Daily's own prebuilt call UI, embedded with the student's token.
      const frame = el("iframe", { src: `${room.room_url}?t=${encodeURIComponent(room.user_token)}`, allow: "microphone; camera; autoplay", style: "width:100%;height:360px;border:0;border-radius:12px" });
      face.node.replaceWith(frame);
      setStatus("Connected");
      return;
    }

    const microphone = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true } });
    call.microphone = microphone;
    if (call.closed) { microphone.getTracks().forEach((t) => t.stop()); return; }
    const peer = new RTCPeerConnection({ iceServers: room.ice_servers || [] });
    call.peer = peer;
    for (const track of microphone.getAudioTracks()) peer.addTrack(track, microphone);
    peer.ontrack = (event) => {
      const stream = event.streams[0] || new MediaStream([event.track]);
      player.srcObject = stream;
      animate(call, stream, face.speak);
    };
    const negotiate = async (options) => {
      await peer.setLocalDescription(await peer.createOffer(options));
      await iceGatheringComplete(peer);
      const answer = await api(room.room_url, { method: "POST", body: { sdp: peer.localDescription.sdp, type: "offer" }, headers: { Authorization: `Bearer ${room.user_token}` } });
      await peer.setRemoteDescription(answer);
    };
    // A network change (Wi-Fi to cellular, a blip) drops the media path: the page restarts ICE
    // on the same call, trying again with backoff while the server holds the call through its
    // grace. A call the server has ended (404, 409) is over.
    const lost = () => fail("Connection lost", "The connection to the counselor was lost. Your session so far is saved.");
    let restarting = false;
    const restartIce = async () => {
      if (restarting) return;
      restarting = true;
      setStatus("Reconnecting…");
      let answered = false;
      for (const wait of [0, 1000, 2000, 4000]) {
        await new Promise((resolve) => setTimeout(resolve, wait));
        if (call.closed || call.ended || peer.connectionState === "connected") break;
        try {
          await negotiate({ iceRestart: true });
          answered = true;
          break;
        } catch (e) {
          if (e instanceof ApiError && (e.status === 404 || e.status === 409)) { restarting = false; lost(); return; }
        }
      }
      restarting = false;
      // Never answered while the network stayed down: the connection's own events may not come.
      if (!answered && peer.connectionState === "failed" && !call.closed && !call.ended) lost();
    };
    peer.oniceconnectionstatechange = () => {
      if (peer.iceConnectionState === "disconnected" || peer.iceConnectionState === "failed") restartIce();
    };
    peer.onconnectionstatechange = () => {
      if (call.closed || call.ended) return;
      if (peer.connectionState === "connected") { setStatus("Listening"); mute.disabled = false; }
      if (peer.connectionState === "failed" && !restarting) lost();
    };
    await negotiate();
  } catch (e) {
    fail(...failureText(e, call.sessionId != null));
  }
}

// What the call page says when a call could not start: the status pill's word and a sentence
// for the student (never the server's or the browser's own message).
function failureText(error, roomOpened) {
  if (error.name === "NotAllowedError" || error.name === "NotFoundError") {
    return ["Microphone needed", "Microphone permission is needed to talk. Allow the microphone for this site, then start again."];
  }
  if (!roomOpened && error instanceof ApiError) {
    if (error.code === "NOTICE_002") return ["Notice first", "Before your first session, please read the notice about what is recorded and who can see it. Go back to the counselors to read it."];
    if (error.status === 429) return ["Please wait", "You have started several sessions in the last minute. Wait a minute, then start again."];
    if (error.status === 404 || error.status === 409) return ["Unavailable", "This counselor is not available right now. Start again later, or choose another counselor."];
  }
  return ["Cannot connect", "The counselor cannot be reached right now. This is not something you did. Please try again in a moment."];
}

function iceGatheringComplete(peer) {
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (peer.iceGatheringState === "complete") { peer.removeEventListener("icegatheringstatechange", done); resolve(); } };
    peer.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000);
  });
}

// The voice call's visual: a circle that swells with the counselor's voice, or (reduced motion)
// stays still and only brightens its ring while the counselor speaks.
function orb() {
  const node = el("div", { class: "orb", "aria-hidden": "true" });
  return { node, speak: (level) => {
    if (reducedMotion.matches) node.classList.toggle("speaking", level > 0.01);
    else node.style.transform = `scale(${1 + Math.min(level * 3, 0.35)})`;
  } };
}

// Drives the orb or the avatar's mouth from the loudness of the counselor's voice.
function animate(call, stream, speak) {
  const context = new AudioContext();
  call.audioContext = context;
  const analyser = context.createAnalyser();
  analyser.fftSize = 512;
  context.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const tick = () => {
    if (call.closed) return;
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    speak(Math.sqrt(sum / samples.length));
    requestAnimationFrame(tick);
  };
  tick();
}

// A friendly drawn face whose mouth opens with the voice and which blinks now and then.
function avatar() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 200 200");
  svg.setAttribute("class", "avatar");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Counselor avatar");
  const shape = (tag, attrs) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    svg.append(node);
    return node;
  };
  shape("circle", { cx: 100, cy: 100, r: 92, fill: "#dfe8ff" });
  shape("path", { d: "M38 92 Q40 30 100 28 Q160 30 162 92 Q150 58 100 56 Q50 58 38 92Z", fill: "#5b4636" });
  shape("ellipse", { cx: 100, cy: 108, rx: 58, ry: 66, fill: "#f2c9a5", opacity: 0.001 });
  shape("circle", { cx: 100, cy: 105, r: 58, fill: "#f2c9a5" });
  const eyes = [shape("ellipse", { cx: 78, cy: 96, rx: 6, ry: 7, fill: "#2b2b2b" }), shape("ellipse", { cx: 122, cy: 96, rx: 6, ry: 7, fill: "#2b2b2b" })];
  shape("path", { d: "M66 82 Q78 76 90 82 M110 82 Q122 76 134 82", stroke: "#5b4636", "stroke-width": 3, fill: "none" });
  const mouth = shape("ellipse", { cx: 100, cy: 134, rx: 16, ry: 2, fill: "#9c3d3d" });
  // With reduced motion the face keeps still (no blinking, no moving mouth); a ring shows speech.
  const blink = setInterval(() => {
    if (!svg.isConnected) { clearInterval(blink); return; }
    if (reducedMotion.matches) return;
    eyes.forEach((e) => e.setAttribute("ry", 1));
    setTimeout(() => eyes.forEach((e) => e.setAttribute("ry", 7)), 140);
  }, 4200);
  return { node: svg, speak: (level) => {
    if (reducedMotion.matches) svg.classList.toggle("speaking", level > 0.01);
    else mouth.setAttribute("ry", String(2 + Math.min(level * 90, 14)));
  } };
}

// ---------------------------------------------------------------------------------------------
// History

async function historyView(params) {
  const page = Math.max(1, Number(params.get("page") || 1));
  const filters = { category: params.get("category") || "", mode: params.get("mode") || "", start_date: params.get("start_date") || "", end_date: params.get("end_date") || "" };
  const query = new URLSearchParams({ page: String(page), per_page: "20" });
  for (const [k, v] of Object.entries(filters)) if (v) query.set(k, v);
  const [categories, result] = await Promise.all([api("counselors/categories"), api(`sessions?${query}`)]);

  const category = el("select", { name: "category" }, el("option", { value: "" }, "All counselors"), categories.map((c) => el("option", { value: c.name, selected: c.name === filters.category }, c.name)));
  const mode = el("select", { name: "mode" }, el("option", { value: "" }, "Voice and video"), el("option", { value: "voice", selected: filters.mode === "voice" }, "Voice"), el("option", { value: "video", selected: filters.mode === "video" }, "Video"));
  const start = el("input", { type: "date", name: "start_date", value: filters.start_date });
  const end = el("input", { type: "date", name: "end_date", value: filters.end_date });
  const apply = (p) => {
    const q = new URLSearchParams({ page: String(p) });
    if (category.value) q.set("category", category.value);
    if (mode.value) q.set("mode", mode.value);
    if (start.value) q.set("start_date", start.value);
    if (end.value) q.set("end_date", end.value);
    location.hash = `#/sessions?${q}`;
  };
  const form = el("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); apply(1); } },
    el("label", {}, "Counselor", category), el("label", {}, "Mode", mode), el("label", {}, "From", start), el("label", {}, "To", end),
    el("button", { type: "submit" }, "Filter"));

  // Each row opens its session; the date is the row's link, so keyboards and screen readers
  // reach it as one.
  const rows = result.sessions.map((s) => el("tr", { class: "row", onclick: (e) => { if (!e.target.closest("a")) location.hash = `#/sessions/${s.id}`; } },
    el("td", { class: "date" }, el("a", { href: `#/sessions/${s.id}` }, formatDate(s.started_at))), el("td", { "data-label": "Counselor" }, s.counselor_category), el("td", { "data-label": "Mode" }, s.mode),
    el("td", { "data-label": "Duration" }, formatDuration(s.duration_seconds)),
    el("td", { class: "rating", "data-label": "Rating" }, s.rating ? ratingText(s.rating) : el("span", { class: "muted" }, "not rated")),
    el("td", { class: "crisis-flag" }, s.crisis_detected ? el("span", { class: "flag" }, "crisis support given") : "")));
  const pages = Math.max(1, Math.ceil(result.total / result.per_page));
  const table = result.sessions.length
    ? el("table", { class: "history" }, el("thead", {}, el("tr", {}, el("th", {}, "Date"), el("th", {}, "Counselor"), el("th", {}, "Mode"), el("th", {}, "Duration"), el("th", {}, "Rating"), el("th", {}, el("span", { class: "visually-hidden" }, "Crisis support")))), el("tbody", {}, rows))
    : el("p", { class: "card muted" }, "No sessions match.");
  show(el("h1", {}, "My sessions"), form, table,
    el("div", { class: "pager" },
      el("button", { class: "secondary", disabled: page <= 1, onclick: () => apply(page - 1) }, "Previous"),
      el("span", {}, `Page ${page} of ${pages} · ${result.total} sessions`),
      el("button", { class: "secondary", disabled: page >= pages, onclick: () => apply(page + 1) }, "Next")));
}

async function sessionView(id, params = new URLSearchParams()) {
  let detail;
  try {
    detail = await api(`sessions/${encodeURIComponent(id)}`);
  } catch (e) {
    show(el("h1", {}, "Session not found"), el("p", {}, e.message), el("a", { href: "#/sessions" }, "Back to my sessions"));
    return;
  }
  // The detail is the session's fields plus its `messages`, joined `transcript` and `rating_comment`.
  const session = detail;
  const messages = detail.messages || [];
  const body = messages.length
    ? messages.map((m) => el("div", { class: `line ${m.speaker}` }, el("span", { class: "who" }, m.speaker === "student" ? "You" : "Counselor"), m.text))
    : [el("p", { class: "muted" }, "No transcript is kept for this session (it may have been erased after the retention period).")];
  const remove = el("button", { class: "danger", onclick: async () => {
    if (!confirm("Delete this session and its transcript? This cannot be undone.")) return;
    await api(`sessions/${encodeURIComponent(id)}`, { method: "DELETE" });
    location.hash = "#/sessions";
  } }, "Delete");
  const rating = el("div", { class: "rating-summary" });
  const showRating = (score, comment) => {
    rating.replaceChildren(el("span", {}, "Your rating: ", el("strong", {}, ratingText(score))),
      comment ? el("span", { class: "muted" }, ` · “${comment}”`) : null);
  };
  if (session.rating) showRating(session.rating, session.rating_comment);
  else if (session.ended_at) {
    const open = () => ratingDialog(id, (stored) => showRating(stored.rating, stored.comment));
    rating.replaceChildren(el("button", { class: "secondary", onclick: open }, "Rate this session"));
    // After a crisis the page leads with the resources, not a request for a score; the
    // button still lets the student rate when they choose.
    if (params.get("rate") === "1" && !session.crisis_detected) setTimeout(open, 0);
  }
  show(
    el("div", { class: "detail-head" },
      el("div", {}, el("h1", {}, `${session.counselor_category} · ${session.mode}`),
        el("p", { class: "muted" }, `${formatDate(session.started_at)} · ${formatDuration(session.duration_seconds)}`,
          session.connection_quality ? ` · ${QUALITY_WORDS[session.connection_quality] || `${session.connection_quality} connection`}` : ""),
        session.crisis_detected ? el("p", { class: "flag" }, "Crisis resources were shared in this session.") : null,
        rating),
      el("div", { class: "status" },
        el("a", { class: "button secondary", href: `${API}/sessions/${encodeURIComponent(id)}/download` }, "Download"),
        remove)),
    el("section", { class: "card transcript saved", "aria-label": "Transcript" }, body),
  );
}

// The call's connection quality, as the server graded it from round-trip time and loss.
const QUALITY_WORDS = { excellent: "excellent connection", good: "good connection", fair: "fair connection (some delay or dropouts)", poor: "poor connection (long delays or dropouts)" };

function ratingText(score) {
  return `${score}/5`;
}

// The rating asked after a call: 1 to 5 and an optional comment, stored once; Skip (or Escape)
// closes it with nothing stored.
function ratingDialog(id, onRated) {
  const COMMENT_MAX = 500;
  const error = el("p", { class: "error", role: "alert" });
  const scores = [1, 2, 3, 4, 5].map((n) => el("label", { class: "score" },
    el("input", { type: "radio", name: "rating", value: String(n), required: true }),
    el("span", {}, String(n))));
  const comment = el("textarea", { name: "comment", maxlength: COMMENT_MAX, rows: 3, "aria-describedby": "rating-comment-count" });
  const count = el("span", { id: "rating-comment-count", class: "muted" }, `0 of ${COMMENT_MAX} characters`);
  comment.addEventListener("input", () => { count.textContent = `${comment.value.length} of ${COMMENT_MAX} characters`; });
  const submit = el("button", { type: "submit" }, "Submit rating");
  const skip = el("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Skip");
  const form = el("form", { onsubmit: async (event) => {
    event.preventDefault();
    const chosen = form.querySelector("input[name=rating]:checked");
    if (!chosen) { error.textContent = "Choose a rating from 1 to 5, or skip."; return; }
    submit.disabled = true;
    error.textContent = "";
    try {
      const stored = await api(`sessions/${encodeURIComponent(id)}/rating`, { method: "POST", body: { rating: Number(chosen.value), comment: comment.value.trim() || null } });
      dialog.close();
      onRated(stored);
    } catch (e) {
      error.textContent = e.message;
      submit.disabled = false;
    }
  } },
    el("h2", { id: "rating-title" }, "How helpful was this session?"),
    el("fieldset", { class: "scores" }, el("legend", {}, "Your rating, from 1 (not helpful) to 5 (very helpful)"), scores),
    el("label", {}, "Anything you'd like to add? (optional)", comment), count,
    el("p", { class: "muted" }, "Your comment is kept as privately as your transcript: only you can read it."),
    error,
    el("div", { class: "dialog-actions" }, submit, skip));
  const dialog = el("dialog", { class: "card rating-dialog", "aria-labelledby": "rating-title" }, form);
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  scores[0].querySelector("input").focus();
}

// ---------------------------------------------------------------------------------------------
// Staff: the crisis review queue, with new events arriving live over /ws/staff/crisis.

const OUTCOMES = {
  contacted_student: "Contacted the student",
  referred: "Referred to counseling services",
  escalated_emergency: "Escalated to emergency services",
  no_action_needed: "No further action needed",
  false_alarm: "False alarm",
};
const SIGNALS = {
  suicidal_ideation: "suicidal ideation", plan_or_means: "plan or means", self_harm: "self-harm",
  harm_to_others: "harm to others", danger_or_abuse: "danger or abuse",
  third_party_risk: "someone else at risk", indirect_warning: "indirect warning signs",
};

function closeStaffFeed() {
  if (state.staffSocket) {
    state.staffSocket.onclose = null;
    state.staffSocket.close();
    state.staffSocket = null;
  }
}

function crisisCard(event, onReviewed) {
  const card = el("article", { class: `card crisis-event ${event.level} ${event.status}`, "data-event-id": event.id },
    el("header", { class: "crisis-head" },
      el("span", { class: `pill level ${event.level}` }, event.level),
      el("strong", { class: "student" }, event.student_username),
      el("span", { class: "muted" }, `${SIGNALS[event.signal] || event.signal} · ${formatDate(event.created_at)}${event.decided_by ? ` · decided by ${event.decided_by}` : ""}`),
    ),
    el("blockquote", { class: "utterance" }, event.text == null ? el("em", { class: "muted" }, "(transcript erased)") : event.text),
  );
  if (event.status === "reviewed") {
    card.append(el("p", { class: "review-result" },
      el("strong", {}, OUTCOMES[event.outcome] || event.outcome),
      ` — ${event.reviewed_by || "a former staff member"}, ${formatDate(event.reviewed_at)}`,
      event.note ? el("span", { class: "note" }, `: ${event.note}`) : null));
    return card;
  }
  const error = el("p", { class: "error", role: "alert" });
  const outcome = el("select", { name: "outcome", required: true },
    el("option", { value: "" }, "Choose an outcome…"),
    Object.entries(OUTCOMES).map(([value, label]) => el("option", { value }, label)));
  const note = el("textarea", { name: "note", maxlength: 2000, rows: 2, placeholder: "What was done (optional, at most 2000 characters)" });
  const submit = el("button", { type: "submit" }, "Mark reviewed");
  card.append(el("form", { class: "review", onsubmit: async (e) => {
    e.preventDefault();
    if (!outcome.value) { error.textContent = "Choose an outcome."; return; }
    submit.disabled = true;
    error.textContent = "";
    try {
      const reviewed = await api(`staff/crisis-events/${encodeURIComponent(event.id)}/review`, { method: "POST", body: { outcome: outcome.value, note: note.value.trim() || null } });
      onReviewed(card, reviewed);
    } catch (err) {
      error.textContent = err.message;
      submit.disabled = false;
    }
  } }, el("label", {}, "Outcome", outcome), el("label", {}, "Note", note), error, submit));
  return card;
}

async function staffView(params) {
  closeStaffFeed();
  const status = ["open", "reviewed", "all"].includes(params.get("status")) ? params.get("status") : "open";
  const page = Math.max(1, Number(params.get("page") || 1));
  const live = el("span", { class: "pill", id: "live-status" }, "Connecting…");
  const list = el("div", { class: "crisis-list", "aria-live": "polite" });
  const pager = el("div", { class: "pager" });
  const filter = el("select", { name: "status", onchange: () => { location.hash = `#/staff?status=${filter.value}`; } },
    ["open", "reviewed", "all"].map((s) => el("option", { value: s, selected: s === status }, { open: "Waiting for review", reviewed: "Reviewed", all: "All" }[s])));
  const empty = el("p", { class: "card muted empty" }, status === "reviewed" ? "No reviewed events yet." : "No crisis events are waiting for review.");
  show(el("div", { class: "detail-head" }, el("h1", {}, "Crisis review"), el("div", { class: "status" }, el("label", {}, "Show", filter), live)),
    el("p", { class: "muted" }, "Utterances the safety check flagged during calls, newest first. New ones appear here the moment they happen. What you see here is confidential and every view is recorded."),
    list, pager);

  const onReviewed = (card, reviewed) => {
    if (status === "open") card.remove(); else card.replaceWith(crisisCard(reviewed, onReviewed));
    if (!list.querySelector(".crisis-event")) list.replaceChildren(empty);
  };
  const seen = new Set();
  const add = (event, { fresh = false } = {}) => {
    if (seen.has(event.id)) return;
    seen.add(event.id);
    const card = crisisCard(event, onReviewed);
    if (fresh) card.classList.add("fresh");
    empty.remove();
    if (fresh) list.prepend(card); else list.append(card);
  };
  const load = async () => {
    const result = await api(`staff/crisis-events?status=${status}&page=${page}&per_page=20`);
    seen.clear();
    list.replaceChildren();
    result.events.forEach((e) => add(e));
    if (!result.events.length) list.append(empty);
    const pages = Math.max(1, Math.ceil(result.total / result.per_page));
    pager.replaceChildren(
      el("button", { class: "secondary", disabled: page <= 1, onclick: () => { location.hash = `#/staff?status=${status}&page=${page - 1}`; } }, "Previous"),
      el("span", {}, `Page ${page} of ${pages} · ${result.total} events`),
      el("button", { class: "secondary", disabled: page >= pages, onclick: () => { location.hash = `#/staff?status=${status}&page=${page + 1}`; } }, "Next"));
  };

  // The live feed first, so nothing flagged while the page loads falls in between.
  const connect = () => {
    const socket = new WebSocket(new URL("/ws/staff/crisis", location.href).href.replace(/^http/, "ws"));
    state.staffSocket = socket;
    socket.onopen = () => { live.textContent = "Live"; live.className = "pill good"; live.dataset.live = "connected"; };
    socket.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (data.type === "crisis_event" && status !== "reviewed" && page === 1) add(data, { fresh: true });
      if (data.type === "resync") load().catch(() => {});
    };
    socket.onclose = (event) => {
      // 1008: blocked, signed out or no longer staff; reconnecting would be refused.
      if (event.code === 1008) { live.textContent = "Closed: " + event.reason; live.className = "pill poor"; delete live.dataset.live; return; }
      live.textContent = "Reconnecting…"; live.className = "pill poor"; delete live.dataset.live;
      if (state.staffSocket !== socket) return;
      // Back after a network blip or a server restart; the reload catches what was missed.
      setTimeout(() => { if (state.staffSocket === socket && location.hash.startsWith("#/staff")) { connect(); load().catch(() => {}); } }, 2000);
    };
  };
  connect();
  try {
    await load();
  } catch (e) {
    list.replaceChildren(el("p", { class: "error" }, e.message));
  }
}
