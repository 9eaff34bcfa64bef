//! Terraform-style text rendering of a plan, with a readable diff of policy documents.

use std::fmt::Write;

use console::Style;

use super::{Action, CertRef, Effect, Plan};
use crate::desired::Role;
use crate::policy;

struct Styles {
    add: Style,
    change: Style,
    destroy: Style,
    dim: Style,
    bold: Style,
    error: Style,
}

impl Styles {
    fn new(color: bool) -> Self {
        let s = |st: Style| st.force_styling(color);
        Self {
            add: s(Style::new().green()),
            change: s(Style::new().yellow()),
            destroy: s(Style::new().red()),
            dim: s(Style::new().dim()),
            bold: s(Style::new().bold()),
            error: s(Style::new().red().bold()),
        }
    }
}

fn cert_name(c: &CertRef) -> String {
    match c {
        CertRef::Existing { id, .. } => format!("certificate {}", short(id)),
        CertRef::New => "the new certificate".to_string(),
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn attrs(a: &std::collections::BTreeMap<String, String>) -> String {
    a.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The plan as people read it. `color` adds ANSI colours (only on a terminal).
pub fn render_text(plan: &Plan, color: bool) -> String {
    let st = Styles::new(color);
    let mut out = String::new();
    let not_pruned = |out: &mut String| {
        if !plan.not_pruned.is_empty() {
            let shown: Vec<&str> = plan
                .not_pruned
                .iter()
                .take(10)
                .map(String::as_str)
                .collect();
            let _ = writeln!(
                out,
                "Note: {} owned thing(s) are not in the fleet file and are kept: {}{}. Run with --prune to delete them.",
                plan.not_pruned.len(),
                shown.join(", "),
                if plan.not_pruned.len() > 10 { ", ..." } else { "" }
            );
        }
    };
    if !plan.has_changes() && plan.problems.is_empty() {
        let _ = writeln!(
            out,
            "{} Fleet {} matches the account ({} identities checked).",
            st.bold.apply_to("No changes."),
            plan.fleet,
            plan.unchanged.len()
        );
        if let Some(d) = &plan.custom_domain {
            let _ = writeln!(
                out,
                "Custom domain {d} is in place (certificate ISSUED, domain configuration ENABLED, CNAME to the ATS endpoint)."
            );
        }
        not_pruned(&mut out);
        return out;
    }
    if plan.has_changes() {
        let _ = writeln!(
            out,
            "provision will perform the following actions (fleet {}, account {}, {}):",
            plan.fleet, plan.account_id, plan.region
        );
        for ip in &plan.changes {
            let role = match ip.role {
                Role::Platform => "platform",
                Role::Station => "station",
            };
            let _ = writeln!(out);
            let header = if ip.removal {
                format!(
                    "# {role} {} (not in the fleet file: deleted by --prune)",
                    ip.id
                )
            } else {
                format!("# {role} {}", ip.id)
            };
            let _ = writeln!(out, "  {}", st.bold.apply_to(header));
            for a in &ip.actions {
                render_action(&mut out, a, &st);
            }
        }
        for dp in &plan.domains {
            super::domain::render_domain(
                &mut out,
                dp,
                |e| match e {
                    super::domain::DomainEffect::One(Effect::Add) => ("+", &st.add),
                    super::domain::DomainEffect::One(Effect::Change) => ("~", &st.change),
                    super::domain::DomainEffect::One(Effect::Destroy) => ("-", &st.destroy),
                    super::domain::DomainEffect::One(Effect::Local) => (">", &st.change),
                    super::domain::DomainEffect::Replace => ("-/+", &st.destroy),
                },
                &st.bold,
            );
        }
        let _ = writeln!(out);
    }
    for p in &plan.problems {
        // Domain problems carry "domain NAME" as their id; the others are station ids.
        let what = if p.id.starts_with("domain ") {
            p.id.clone()
        } else {
            format!("station {}", p.id)
        };
        let _ = writeln!(out, "{} {what}: {}", st.error.apply_to("Error:"), p.message);
    }
    if !plan.problems.is_empty() {
        let _ = writeln!(out);
    }
    not_pruned(&mut out);
    let s = plan.summary;
    let _ = writeln!(
        out,
        "{} {} to add, {} to change, {} to destroy.{}",
        st.bold.apply_to("Plan:"),
        s.add,
        s.change,
        s.destroy,
        if plan.problems.is_empty() {
            String::new()
        } else {
            format!(
                " {} station(s) need attention (see above).",
                plan.problems.len()
            )
        }
    );
    out
}

fn render_action(out: &mut String, a: &Action, st: &Styles) {
    let (sym, style) = match a.effect() {
        Effect::Add => ("+", &st.add),
        Effect::Change => ("~", &st.change),
        Effect::Destroy => ("-", &st.destroy),
        Effect::Local => (">", &st.change),
    };
    let line = match a {
        Action::CreateThing { thing, attributes } => {
            format!("thing {thing} ({})", attrs(attributes))
        }
        Action::UpdateThing {
            thing,
            attributes,
            before,
        } => format!(
            "thing {thing} attributes: {} -> {}",
            attrs(before),
            attrs(attributes)
        ),
        Action::CreatePolicy { policy, document } => {
            let n = document
                .get("Statement")
                .map(|s| s.as_array().map(Vec::len).unwrap_or(1))
                .unwrap_or(0);
            format!("policy {policy} ({n} statement{})", if n == 1 { "" } else { "s" })
        }
        Action::UpdatePolicy {
            policy,
            delete_version,
            ..
        } => match delete_version {
            Some(v) => format!(
                "policy {policy}: new default version (deletes the oldest version, {v}, first: AWS keeps 5)"
            ),
            None => format!("policy {policy}: new default version"),
        },
        Action::ArchiveLocalFiles { dir, reason } => {
            format!("archive {} ({reason}; keys are moved, never deleted)", dir.display())
        }
        Action::CreateCertificate { dir, key, .. } => match key {
            crate::keygen::KeyMethod::Aws => {
                format!("certificate (new key pair, saved once to {})", dir.display())
            }
            crate::keygen::KeyMethod::Csr { algorithm } => format!(
                "certificate (local {} key saved once to {}, CSR signed by AWS IoT)",
                algorithm.label(),
                dir.display()
            ),
        },
        Action::AttachThingPrincipal { thing, certificate } => {
            format!("attach {} to thing {thing}", cert_name(certificate))
        }
        Action::AttachPolicy {
            policy,
            certificate,
        } => format!("attach policy {policy} to {}", cert_name(certificate)),
        Action::DetachPolicy {
            policy,
            certificate,
        } => format!("detach policy {policy} from {}", cert_name(certificate)),
        Action::ActivateCertificate {
            certificate,
            reason,
        } => format!("activate {} ({reason})", cert_name(certificate)),
        Action::DeactivateCertificate {
            certificate,
            reason,
        } => format!("deactivate {} ({reason})", cert_name(certificate)),
        Action::DetachThingPrincipal { thing, certificate } => {
            format!("detach {} from thing {thing}", cert_name(certificate))
        }
        Action::DeleteCertificate { certificate } => format!("delete {}", cert_name(certificate)),
        Action::DeletePolicy { policy, versions } if versions.is_empty() => {
            format!("delete policy {policy}")
        }
        Action::DeletePolicy { policy, versions } => format!(
            "delete policy {policy} (and its {} older version{})",
            versions.len(),
            if versions.len() == 1 { "" } else { "s" }
        ),
        Action::DeleteThing { thing } => format!("delete thing {thing}"),
        Action::RestoreLocalFiles { from, dir } => format!(
            "restore {} from the archive ({}): it holds the key of the ACTIVE certificate",
            dir.display(),
            from.display()
        ),
    };
    let _ = writeln!(out, "  {} {line}", style.apply_to(sym));
    if let Action::UpdatePolicy {
        document, before, ..
    } = a
    {
        let old = policy::to_pretty(&policy::normalize(before));
        let new = policy::to_pretty(&policy::normalize(document));
        let diff = similar::TextDiff::from_lines(&old, &new);
        for change in diff.iter_all_changes() {
            let text = change.to_string_lossy();
            let text = text.trim_end_matches('\n');
            let _ = match change.tag() {
                similar::ChangeTag::Delete => {
                    writeln!(out, "      {}", st.destroy.apply_to(format!("- {text}")))
                }
                similar::ChangeTag::Insert => {
                    writeln!(out, "      {}", st.add.apply_to(format!("+ {text}")))
                }
                similar::ChangeTag::Equal => {
                    writeln!(out, "      {}", st.dim.apply_to(format!("  {text}")))
                }
            };
        }
    }
}
