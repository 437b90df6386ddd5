//! Configuration: TOML text in, validated values out (being written).
