// The browser side of the dashboard feed: a WebSocket to /feed that stays open.
//
// The server sends JSON arrays of messages ({"t": "hello"|"snapshot"|"delta"|"event"|
// "runtime"|"status", ...}); the first message after (re)connecting is a hello
// with the whole current picture. The page sends two things on it: "resync", to be
// sent a fresh hello (it was sent a delta of a snapshot it has not), and the page of
// streams it shows ("streams?QUERY", or "streams": none; app.py). Commands go over
// plain HTTP (see api()).

const RETRY_MS = 1000;

/**
 * Open the feed; onMessage(message, arrived) is called for every message, in order
 * (arrived: performance.now() when its WebSocket message arrived, before parsing);
 * onLink(up) when the link to the dashboard goes up or down. Returns {resync()}: ask
 * for a fresh hello (nothing while the link is down: the next one starts with a hello),
 * send(text)}.
 */
export function openFeed(onMessage, onLink) {
  let socket = null;
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/feed`;

  function start() {
    socket = new WebSocket(url);
    socket.onopen = () => onLink(true);
    socket.onmessage = (ev) => {
      const arrived = performance.now();
      let batch;
      try { batch = JSON.parse(ev.data); } catch (err) { console.error("bad feed message", err); return; }
      for (const message of batch) {
        try { onMessage(message, arrived); } catch (err) { console.error("while handling", message.t, err); }
      }
    };
    socket.onclose = () => {
      onLink(false);
      setTimeout(start, RETRY_MS);
    };
  }
  start();
  const send = (text) => { if (socket && socket.readyState === WebSocket.OPEN) socket.send(text); };
  return {
    resync() { send("resync"); },
    /** Send text (app.py's feed: "streams?QUERY", "streams"); nothing while the link is down. */
    send,
  };
}

/** POST a command; resolves to the JSON answer, rejects with the server's error text. */
export async function api(path, body, headers = {}) {
  const init = { method: "POST", headers };
  if (body instanceof Blob) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { "Content-Type": "application/json", ...headers };
  }
  const response = await fetch(path, init);
  let answer = null;
  try { answer = await response.json(); } catch { answer = null; }
  if (!response.ok || !answer || answer.ok === false) {
    throw new Error(answer?.error || `${path}: HTTP ${response.status}`);
  }
  return answer;
}

/** GET JSON. */
export async function getJson(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}
