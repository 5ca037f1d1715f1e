"""Prospectus questions as GOV.UK Frontend components, and posted form data back to answers.

A question's value travels in three shapes: the stored answer (cbflow.forms), what the form shows
and posts ("raw": strings as typed, so nothing typed is lost when a page comes back with errors;
cbflow.web.forms_ui.raw), and the parameters of the GOV.UK macro that draws it
(cbflow.web.forms_ui.fields). Files posted are cbflow.web.forms_ui.uploads.
"""

from __future__ import annotations

from cbflow.web.forms_ui.fields import (
    Field,
    asks_for_council,
    error_anchor,
    field_for,
    field_message,
    section_fields,
)
from cbflow.web.forms_ui.raw import (
    ASKED_FIELD,
    BASE_FIELD,
    KEEP_FIELD,
    NO,
    UPLOAD_FIELD,
    VERSION_FIELD,
    YES,
    Unreadable,
    asked,
    carried,
    from_raw,
    keep_theirs,
    raw_as_fields,
    raw_of_section,
    read_base,
    read_raw,
    to_raw,
    unchosen,
)
from cbflow.web.forms_ui.uploads import (
    CHUNK,
    FILE_MAX_MB,
    MAGIC,
    PDF_MAGIC,
    Upload,
    check_upload,
    kept_upload,
    read_upload,
    read_uploads,
    store_upload,
    upload_limit_mb,
)

__all__ = [
    "ASKED_FIELD",
    "BASE_FIELD",
    "CHUNK",
    "FILE_MAX_MB",
    "KEEP_FIELD",
    "MAGIC",
    "NO",
    "PDF_MAGIC",
    "UPLOAD_FIELD",
    "VERSION_FIELD",
    "YES",
    "Field",
    "Unreadable",
    "Upload",
    "asked",
    "asks_for_council",
    "carried",
    "check_upload",
    "error_anchor",
    "field_for",
    "field_message",
    "from_raw",
    "keep_theirs",
    "kept_upload",
    "raw_as_fields",
    "raw_of_section",
    "read_base",
    "read_raw",
    "read_upload",
    "read_uploads",
    "section_fields",
    "store_upload",
    "to_raw",
    "unchosen",
    "upload_limit_mb",
]
