//! Trigger lines (`--trigger`, `trigger=`, `wok.toml`) and sizes: any text
//! is parsed without a panic, and a line that parses writes itself back
//! as a line that parses to the same trigger.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = domain::ByteSize::parse(text);
    if let Ok(spec) = domain::TriggerSpec::parse(text) {
        let line = spec.to_text();
        let again = domain::TriggerSpec::parse(&line)
            .unwrap_or_else(|error| panic!("{text:?} wrote {line:?}, which does not parse: {error}"));
        assert_eq!(again, spec, "{text:?} -> {line:?}");
    }
});
