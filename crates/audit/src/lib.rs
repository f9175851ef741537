//! pgcordon audit trail (in progress).
