// Warns a signed-in person a little before their session times out for want of activity, and
// offers to stay signed in (a post to /session/keep-alive) or to sign out. The server keeps the
// time: before warning, and before leaving the page at the end, the script asks it how long is
// left, so activity in another tab counts. At the end it goes to /session/timed-out, which sends
// the person on to sign in again and back here afterwards.

const meta = document.querySelector('meta[name="cbflow-session-idle-seconds"]');
if (meta) {
  start(Number(meta.content));
}

function start(idleSeconds) {
  const warnBefore = Math.min(120, idleSeconds / 2);
  const tokenField = document.querySelector('input[name="csrf_token"]');
  let warnTimer = null;
  let endTimer = null;
  let tickTimer = null;
  let dialog = null;
  let returnFocus = null;

  function schedule(remaining) {
    clearTimeout(warnTimer);
    clearTimeout(endTimer);
    warnTimer = setTimeout(check, Math.max(0, remaining - warnBefore) * 1000);
  }

  async function remainingSeconds() {
    try {
      const response = await fetch("/session/status", {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      const answer = await response.json();
      return answer.remaining_seconds;
    } catch {
      return null; // unknown: warn anyway, as if no other tab had been used
    }
  }

  async function check() {
    const remaining = await remainingSeconds();
    if (remaining === null) {
      open(warnBefore);
    } else if (remaining <= 0) {
      leave();
    } else if (remaining > warnBefore + 1) {
      schedule(remaining); // kept alive elsewhere
    } else {
      open(remaining);
    }
  }

  async function end() {
    const remaining = await remainingSeconds();
    if (remaining === null || remaining <= 0) {
      leave();
    } else if (remaining > warnBefore + 1) {
      close(); // kept alive in another tab
      schedule(remaining);
    } else {
      open(remaining); // a moment early: the warning stays and waits for the end again
    }
  }

  function leave() {
    const here = window.location.pathname + window.location.search;
    window.location.assign("/session/timed-out?back=" + encodeURIComponent(here));
  }

  async function stay() {
    try {
      const response = await fetch("/session/keep-alive", {
        method: "POST",
        headers: { Accept: "application/json", "X-CSRF-Token": tokenField.value },
        credentials: "same-origin",
      });
      if (!response.ok) {
        leave();
        return;
      }
      const answer = await response.json();
      close();
      schedule(answer.remaining_seconds);
    } catch {
      close();
      schedule(warnBefore);
    }
  }

  function inWords(seconds) {
    if (seconds >= 60) {
      const minutes = Math.ceil(seconds / 60);
      return minutes === 1 ? "1 minute" : `${minutes} minutes`;
    }
    const whole = Math.max(0, Math.ceil(seconds));
    return whole === 1 ? "1 second" : `${whole} seconds`;
  }

  function build() {
    const box = document.createElement("dialog");
    box.className = "cbflow-timeout-dialog";
    box.setAttribute("role", "alertdialog");
    box.setAttribute("aria-modal", "true");
    box.setAttribute("aria-labelledby", "cbflow-timeout-heading");
    box.setAttribute("aria-describedby", "cbflow-timeout-text");

    const heading = document.createElement("h2");
    heading.className = "govuk-heading-m";
    heading.id = "cbflow-timeout-heading";
    heading.textContent = "You’re about to be signed out";

    const text = document.createElement("p");
    text.className = "govuk-body";
    text.id = "cbflow-timeout-text";
    text.append("For your security, we will sign you out in ");
    const when = document.createElement("strong");
    when.className = "cbflow-timeout-when";
    text.append(when, ". Answers you have saved will be kept.");

    const buttons = document.createElement("div");
    buttons.className = "govuk-button-group";
    const stayButton = document.createElement("button");
    stayButton.type = "button";
    stayButton.className = "govuk-button";
    stayButton.textContent = "Stay signed in";
    stayButton.addEventListener("click", stay);

    const signOut = document.createElement("form");
    signOut.method = "post";
    signOut.action = "/sign-out";
    signOut.className = "cbflow-inline-form";
    const token = document.createElement("input");
    token.type = "hidden";
    token.name = "csrf_token";
    token.value = tokenField.value;
    const signOutButton = document.createElement("button");
    signOutButton.type = "submit";
    signOutButton.className = "govuk-link cbflow-link-button";
    signOutButton.textContent = "Sign out";
    signOut.append(token, signOutButton);

    buttons.append(stayButton, signOut);
    box.append(heading, text, buttons);
    // Escape means "not now": the same as staying signed in
    box.addEventListener("cancel", (event) => {
      event.preventDefault();
      stay();
    });
    document.body.append(box);
    return box;
  }

  function open(remaining) {
    if (!tokenField) {
      return;
    }
    dialog = dialog || build();
    const endsAt = Date.now() + remaining * 1000;
    const when = dialog.querySelector(".cbflow-timeout-when");
    const tick = () => {
      when.textContent = inWords((endsAt - Date.now()) / 1000);
    };
    tick();
    clearInterval(tickTimer);
    tickTimer = setInterval(tick, 1000);
    if (!dialog.open) {
      returnFocus = document.activeElement;
      dialog.showModal();
      dialog.querySelector(".govuk-button").focus();
    }
    clearTimeout(endTimer);
    endTimer = setTimeout(end, remaining * 1000);
  }

  function close() {
    clearInterval(tickTimer);
    clearTimeout(endTimer);
    if (dialog && dialog.open) {
      dialog.close();
      if (returnFocus && typeof returnFocus.focus === "function") {
        returnFocus.focus();
      }
    }
  }

  // a page's own requests (an autosave) are activity too
  document.addEventListener("cbflow:activity", () => {
    if (!dialog || !dialog.open) {
      schedule(idleSeconds);
    }
  });
  schedule(idleSeconds);
}
