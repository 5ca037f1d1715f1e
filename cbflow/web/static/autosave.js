// Saves a section's answers in the background: a moment after typing stops, and when the page is
// left. The Save button still does everything without this script. The server answers with the
// line to show ("Saved at 10:42", or "Not saved: ..."), read out politely by screen readers.

const DELAY_MS = 2000;
const form = document.querySelector("form[data-autosave]");
if (form) {
  start(form);
}

function start(form) {
  const url = form.dataset.autosave;
  const status = document.getElementById("autosave-status");
  const token = form.querySelector('input[name="csrf_token"]').value;
  let timer = null;
  let saving = false;
  let again = false;
  let stopped = false;
  let submitting = false;
  let lastSaved = formBody();

  function formBody() {
    // files are left to the Save button; the buttons and the token are not answers
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(form)) {
      if (typeof value === "string" && name !== "csrf_token" && name !== "action") {
        params.append(name, value);
      }
    }
    return params.toString();
  }

  function show(message) {
    if (status && message) {
      status.textContent = message;
    }
  }

  function later() {
    clearTimeout(timer);
    if (!stopped && !submitting) {
      timer = setTimeout(save, DELAY_MS);
    }
  }

  async function save(options = {}) {
    clearTimeout(timer);
    timer = null;
    const body = formBody();
    if (stopped || body === lastSaved) {
      return;
    }
    if (saving) {
      again = true;
      return;
    }
    saving = true;
    try {
      const response = await fetch(url, {
        method: "POST",
        headers: {
          Accept: "application/json",
          "Content-Type": "application/x-www-form-urlencoded",
          "X-CSRF-Token": token,
        },
        body,
        credentials: "same-origin",
        keepalive: Boolean(options.keepalive),
      });
      const answer = await readJson(response);
      if (response.ok && answer) {
        lastSaved = body;
        document.dispatchEvent(new CustomEvent("cbflow:activity"));
        show(answer.message);
      } else {
        // 409: past the deadline or submitted; 401: signed out. Saving again cannot help.
        stopped = [401, 403, 404, 409].includes(response.status);
        show(
          answer && answer.message
            ? answer.message
            : "Not saved: reload the page, then use Save and continue",
        );
      }
    } catch {
      show("Not saved: the service could not be reached. Use Save and continue to try again");
    } finally {
      saving = false;
      if (again) {
        again = false;
        later();
      }
    }
  }

  async function readJson(response) {
    const type = response.headers.get("content-type") || "";
    return type.startsWith("application/json") ? response.json() : null;
  }

  form.addEventListener("input", later);
  form.addEventListener("change", later);
  form.addEventListener("submit", () => {
    // the Save button (or a table's add and remove buttons) sends the form itself
    submitting = true;
    clearTimeout(timer);
  });
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) {
      submitting = false; // back to this page from the browser's history
    }
  });
  window.addEventListener("pagehide", () => {
    if (!submitting) {
      save({ keepalive: true });
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden" && !submitting) {
      save({ keepalive: true });
    }
  });
  if (form.hasAttribute("data-autosave-unsaved")) {
    // the page came back from adding or removing a table row: what it shows is not saved yet
    lastSaved = null;
    later();
  }
}
