//! What the subcommands' flags share: one value parser for counts and sizes,
//! so that clap refuses a bad value before any work starts, naming the flag
//! and the range it accepts.

/// Parses a whole number from `min` to `max`, both included. Anything else
/// (`-1`, `0` when `min` is 1, `1e9`, `NaN`, a value past `max`) is refused
/// with the range: clap prints `invalid value '-1' for '--validators
/// <VALIDATORS>': expected a whole number from 1 to 1000`.
pub fn whole<T>(min: u64, max: u64) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
{
    move |text| {
        text.parse::<u64>()
            .ok()
            .filter(|value| (min..=max).contains(value))
            .and_then(|value| T::try_from(value).ok())
            .ok_or_else(|| format!("expected a whole number from {min} to {max}"))
    }
}

/// Lets every option that takes a value accept one that looks like a
/// negative number (`--validators -1`, `--crash -0.3`), so that its parser
/// or check refuses it with the reason, where clap would otherwise call
/// `-1` an unknown argument.
pub fn negative_numbers_are_values(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| if arg.get_action().takes_values() { arg.allow_negative_numbers(true) } else { arg })
        .mut_subcommands(negative_numbers_are_values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_within_the_range_only() {
        let parse = whole::<u32>(1, 1_000);
        assert_eq!(parse("1"), Ok(1));
        assert_eq!(parse("1000"), Ok(1_000));
        for refused in ["0", "1001", "-1", "", "NaN", "1e3", "2.5", "18446744073709551616"] {
            assert_eq!(parse(refused), Err("expected a whole number from 1 to 1000".to_string()), "{refused:?}");
        }
    }
}
