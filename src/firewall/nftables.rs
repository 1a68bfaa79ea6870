//! nftables: `table inet astpatch` with one interval+timeout set per family and an input chain
//! that drops their members. Created and restored in one `nft -f` batch (atomic in the kernel).
use ipnet::IpNet;

use super::{CommandRunner, Firewall, command_failed, now, parse_net, timeout_secs};
use crate::config::Backend;
use crate::error::Result;

pub const TABLE: &str = "astpatch";
const MODULES: &str = "nf_tables nft_set_hash nft_set_rbtree";

pub struct Nftables {
    runner: Box<dyn CommandRunner>,
}

fn set_of(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "ban4",
        IpNet::V6(_) => "ban6",
    }
}

/// Declaring the table, sets and chain is idempotent in a batch: existing ones are kept.
const DEFINITION: &str = "table inet astpatch {
  set ban4 { type ipv4_addr; flags interval, timeout; }
  set ban6 { type ipv6_addr; flags interval, timeout; }
  chain input {
    type filter hook input priority filter - 10; policy accept;
  }
}
";

fn element(net: &IpNet, until: Option<i64>, now: i64) -> String {
    match timeout_secs(until, now) {
        Some(t) => format!("{net} timeout {t}s"),
        None => net.to_string(),
    }
}

/// Elements of `nft -j list set` output.
pub fn parse_set_json(text: &str) -> Vec<IpNet> {
    fn net_of(v: &serde_json::Value) -> Option<IpNet> {
        match v {
            serde_json::Value::String(s) => parse_net(s),
            serde_json::Value::Object(o) => {
                if let Some(e) = o.get("elem") {
                    return net_of(e.get("val")?);
                }
                if let Some(p) = o.get("prefix") {
                    return parse_net(&format!("{}/{}", p.get("addr")?.as_str()?, p.get("len")?));
                }
                if let Some(r) = o.get("range") {
                    // Only produced if someone merged neighbours; keep the start address.
                    return parse_net(r.get(0)?.as_str()?);
                }
                None
            }
            _ => None,
        }
    }
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(text) else {
        return vec![];
    };
    doc.get("nftables")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("set")?.get("elem")?.as_array())
        .flatten()
        .filter_map(net_of)
        .collect()
}

impl Nftables {
    pub fn new(runner: Box<dyn CommandRunner>) -> Self {
        Nftables { runner }
    }

    fn batch(&self, text: &str) -> Result<()> {
        let argv = ["nft", "-f", "-"];
        let out = self.runner.run(&argv, Some(text.as_bytes()))?;
        if !out.success {
            return Err(command_failed(&argv, &out, MODULES));
        }
        Ok(())
    }

    fn rules_present(&self) -> Result<bool> {
        let out = self
            .runner
            .run(&["nft", "list", "chain", "inet", TABLE, "input"], None)?;
        Ok(out.success && out.stdout.contains("@ban4") && out.stdout.contains("@ban6"))
    }
}

impl Firewall for Nftables {
    fn ensure(&mut self) -> Result<()> {
        self.batch(DEFINITION)?;
        if !self.rules_present()? {
            self.batch(
                "flush chain inet astpatch input\n\
                 add rule inet astpatch input ip saddr @ban4 drop\n\
                 add rule inet astpatch input ip6 saddr @ban6 drop\n",
            )?;
        }
        Ok(())
    }

    fn ban(&mut self, net: IpNet, until: Option<i64>) -> Result<()> {
        // Delete-then-add in one batch refreshes the timeout of an existing element; the
        // leading add makes the delete valid when the element is new.
        let el = element(&net, until, now());
        let set = set_of(&net);
        self.batch(&format!(
            "add element inet {TABLE} {set} {{ {net} }}\n\
             delete element inet {TABLE} {set} {{ {net} }}\n\
             add element inet {TABLE} {set} {{ {el} }}\n"
        ))
    }

    fn unban(&mut self, net: IpNet) -> Result<()> {
        if !self.list()?.contains(&net) {
            return Ok(());
        }
        self.batch(&format!(
            "delete element inet {TABLE} {} {{ {net} }}\n",
            set_of(&net)
        ))
    }

    fn list(&self) -> Result<Vec<IpNet>> {
        let mut v = vec![];
        for set in ["ban4", "ban6"] {
            let out = self
                .runner
                .run(&["nft", "-j", "list", "set", "inet", TABLE, set], None)?;
            if out.success {
                v.extend(parse_set_json(&out.stdout));
            }
        }
        Ok(v)
    }

    fn hooked(&self) -> Result<bool> {
        let out = self
            .runner
            .run(&["nft", "list", "chain", "inet", TABLE, "input"], None)?;
        Ok(out.success && out.stdout.contains("hook input") && self.rules_present()?)
    }

    fn restore(&mut self, bans: &[(IpNet, Option<i64>)]) -> Result<()> {
        self.ensure()?;
        let now = now();
        let mut text = String::with_capacity(bans.len() * 40 + 256);
        text.push_str("flush set inet astpatch ban4\nflush set inet astpatch ban6\n");
        for set in ["ban4", "ban6"] {
            let els: Vec<String> = bans
                .iter()
                .filter(|(n, _)| set_of(n) == set)
                .map(|(n, u)| element(n, *u, now))
                .collect();
            // Chunked so no single statement gets huge; still one transaction.
            for chunk in els.chunks(5000) {
                text.push_str(&format!(
                    "add element inet {TABLE} {set} {{ {} }}\n",
                    chunk.join(", ")
                ));
            }
        }
        self.batch(&text)
    }

    fn teardown(&mut self) -> Result<()> {
        let out = self
            .runner
            .run(&["nft", "list", "table", "inet", TABLE], None)?;
        if out.success {
            self.batch("delete table inet astpatch\n")?;
        }
        Ok(())
    }

    fn name(&self) -> Backend {
        Backend::Nftables
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nft_json_elements() {
        let v4 = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "inet", "name": "ban4", "table": "astpatch", "type": "ipv4_addr", "elem": [{"elem": {"val": "10.1.1.1", "timeout": 100, "expires": 99}}, {"prefix": {"addr": "10.2.0.0", "len": 16}}, "10.3.3.3"]}}]}"#;
        let got: Vec<String> = parse_set_json(v4).iter().map(|n| n.to_string()).collect();
        assert_eq!(got, ["10.1.1.1/32", "10.2.0.0/16", "10.3.3.3/32"]);
        let v6 = r#"{"nftables": [{"set": {"elem": [{"elem": {"val": {"prefix": {"addr": "fd00::", "len": 64}}, "timeout": 100}}]}}]}"#;
        assert_eq!(parse_set_json(v6)[0].to_string(), "fd00::/64");
        assert!(parse_set_json("garbage").is_empty());
    }
}
