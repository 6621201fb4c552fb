//! What every bench binary shares.

/// The value after `name` on the command line, or `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `cargo test --all-targets` runs a bench binary without `--bench`: then
/// it runs small, as a smoke test that it still works, without the cost of
/// the figures.
pub fn smoke() -> bool {
    !std::env::args().any(|a| a == "--bench")
}
