//! Every connector type's templates rendered over every fixture, as `chatbridge render` would
//! print the requests: first versions and, for types with `update` steps, a later version
//! with the ledger known. Each rendered JSON body must parse; the text is compared with the
//! snapshot in `tests/api/snapshots/` (after a deliberate change, review and accept with
//! `INSTA_UPDATE=always cargo test --test api snapshots`).

use std::fmt::Write as _;

use chatbridge::config::Config;
use chatbridge::connectors::PlannedRequest;
use chatbridge::sources::Source;

use crate::helpers::{every_version, fixture_path, smartsupp_payloads};

fn print(out: &mut String, plan: &[PlannedRequest]) {
    for request in plan {
        let later = if request.depends_on_earlier {
            " (uses earlier answers)"
        } else {
            ""
        };
        writeln!(out, "## {}{later}", request.step).unwrap();
        writeln!(out, "{} {}", request.method, request.target).unwrap();
        for (name, value) in &request.headers {
            writeln!(out, "{name}: {value}").unwrap();
        }
        if let Some(body) = &request.body {
            if request
                .headers
                .iter()
                .any(|(n, v)| n == "content-type" && v == "application/json")
            {
                serde_json::from_str::<serde_json::Value>(body)
                    .unwrap_or_else(|e| panic!("{}: not JSON ({e}):\n{body}", request.step));
            }
            writeln!(out, "\n{}", body.trim_end()).unwrap();
        }
        out.push('\n');
    }
}

#[test]
fn every_template_over_every_fixture() {
    let config = Config::load(&fixture_path("catalog.toml")).expect("catalog config loads");
    let registry = chatbridge::app::registry(&config).expect("catalog registry builds");
    let fixtures = smartsupp_payloads();
    let mut kinds = 0;
    for connector in registry.connectors() {
        let mut out = String::new();
        for path in &fixtures {
            let name = path.file_name().unwrap().to_string_lossy();
            let Ok(parsed) = Source::Smartsupp.parse(&std::fs::read(path).unwrap()) else {
                continue; // refused payloads have their own tests
            };
            for (version, plan) in every_version(&registry, connector.as_ref(), &parsed) {
                writeln!(out, "# {name}, version {version}\n").unwrap();
                print(&mut out, &plan);
            }
        }
        insta::assert_snapshot!(connector.kind(), out);
        kinds += 1;
    }
    assert_eq!(kinds, 13, "every shipped type but file is in catalog.toml");
}
