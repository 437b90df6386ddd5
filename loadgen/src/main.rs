//! postern-loadgen: the load generator and verifying sink (placeholder until its own work lands).

fn main() -> anyhow::Result<()> {
    anyhow::bail!("postern-loadgen is not built yet; see docs/limitations.md")
}
