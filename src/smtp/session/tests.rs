//! Dialogue fixtures for the session.
