// Saves a section's answers in the background: a moment after typing stops, and when the page is
// left. The Save button still does everything without this script. The server answers with the
// line to show ("Saved at 10:42", or "Not saved: ..."), read out politely by screen readers.
// Each save carries the version of the answers the page shows (the hidden `_version` and `_base`
// fields), and each saved answer gives the new one: a colleague's newer answer is never
// overwritten, the server refuses the save (409) and says who changed what.

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
  let lastSaved = answersBody();

  function formBody(withBase = true) {
    // files are left to the Save button; the buttons and the token are not answers
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(form)) {
      if (typeof value === "string" && name !== "csrf_token" && name !== "action") {
        if (withBase || !name.startsWith("_")) {
          params.append(name, value);
        }
      }
    }
    return params.toString();
  }

  function answersBody() {
    // what was typed, without the version it is based on: unchanged answers are not sent again
    return formBody(false);
  }

  function setField(name, value) {
    const field = form.querySelector(`input[type="hidden"][name="${name}"]`);
    if (field && value !== undefined && value !== null) {
      field.value = String(value);
    }
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
    const answers = answersBody();
    if (stopped || answers === lastSaved) {
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
        body: formBody(),
        credentials: "same-origin",
        keepalive: Boolean(options.keepalive),
      });
      const answer = await readJson(response);
      if (response.ok && answer) {
        lastSaved = answers;
        // the version and answers the page now shows: the next save is checked against them
        setField("_version", answer.version);
        setField("_base", answer.base);
        document.dispatchEvent(new CustomEvent("cbflow:activity"));
        show(answer.message);
      } else {
        // 409: past the deadline, submitted, or changed by a colleague (Save and continue then
        // shows both answers); 401: signed out. Saving again cannot help.
        stopped = [401, 403, 404, 409].includes(response.status);
        if (response.status === 503) {
          again = true; // busy: nothing was saved, try again in a moment
        }
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
