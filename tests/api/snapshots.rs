//! Every connector type's templates rendered over every fixture, as `chatbridge render` would
//! print the requests: first versions and, for types with `update` steps, a later version
//! with the ledger known. Each rendered JSON body must parse; the text is compared with the
//! snapshot in `tests/api/snapshots/` (after a deliberate change, review and accept with
//! `INSTA_UPDATE=always cargo test --test api snapshots`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chatbridge::config::Config;
use chatbridge::connectors::{DeliveryJob, PlannedRequest, StepOutputs};
use chatbridge::render::DeliveryInfo;
use chatbridge::sources::Source;

use crate::helpers::fixture_path;

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
    let mut fixtures: Vec<_> = std::fs::read_dir(fixture_path("smartsupp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    fixtures.sort();
    let completed: BTreeMap<String, StepOutputs> = BTreeMap::new();
    let nothing = StepOutputs::new();
    let mut kinds = 0;
    for connector in registry.connectors() {
        let definition = registry.definitions().get(connector.kind()).unwrap();
        // What a first delivery left in the ledger, for the later version's steps.
        let known: StepOutputs = definition
            .ledger
            .iter()
            .map(|name| (name.clone(), serde_json::json!("4242")))
            .collect();
        let mut out = String::new();
        for path in &fixtures {
            let name = path.file_name().unwrap().to_string_lossy();
            let Ok(parsed) = Source::Smartsupp.parse(&std::fs::read(path).unwrap()) else {
                continue; // refused payloads have their own tests
            };
            let versions: &[(i64, &StepOutputs)] = if definition.update.is_empty() {
                &[(1, &nothing)]
            } else {
                &[(1, &nothing), (2, &known)]
            };
            for (version, ledger) in versions {
                let job = DeliveryJob {
                    conversation: &parsed.conversation,
                    raw: &parsed.raw,
                    delivery: DeliveryInfo {
                        id: 0,
                        key: format!("cb:{}:{}", connector.name(), parsed.conversation.id),
                        version: *version,
                        attempt: 1,
                    },
                    completed: &completed,
                    ledger,
                };
                let plan = connector
                    .plan(&job)
                    .unwrap_or_else(|e| panic!("{} over {name} v{version}: {e}", connector.kind()));
                writeln!(out, "# {name}, version {version}\n").unwrap();
                print(&mut out, &plan);
            }
        }
        insta::assert_snapshot!(connector.kind(), out);
        kinds += 1;
    }
    assert_eq!(kinds, 13, "every shipped type but file is in catalog.toml");
}
