// The "Save recording" link: the dashboard's retained window as a recording file
// (GET /api/recording/save, see save.py). A plain download link, so the browser
// streams the file to disk; shown once the dashboard keeps a snapshot.

const $ = (id) => document.getElementById(id);
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** Show the link for the status st and the n snapshots of the page's timeline (the store's). */
export function renderSave(st, n) {
  const link = $("save-recording");
  const snapshots = n;
  link.hidden = snapshots === 0;
  const where = st && st.mode === "recording" ? "of this recording" : st && st.paused ? "kept while paused" : "kept";
  link.title = `save the ${plural(snapshots, "snapshot")} and the events ${where} as a recording file`;
}
