// Starts GOV.UK Frontend's components. A file, not an inline script, so the page's
// Content-Security-Policy can stay at script-src 'self'.
import { initAll } from "/govuk/govuk-frontend.min.js";

initAll();
