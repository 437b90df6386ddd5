//! The SMTP protocol machine: bytes in, replies and events out (being written).
