//! A small command-line parser: positional arguments and `--flag value` options.

use std::collections::BTreeMap;

/// Parsed arguments of one subcommand.
#[derive(Debug, Default)]
pub struct Args {
    /// Positional arguments, in order.
    pub positional: Vec<String>,
    options: BTreeMap<String, Option<String>>,
}

/// A command-line error, printed with the usage.
pub type ArgError = String;

impl Args {
    /// Parses `argv` (without the program and subcommand names). `switches` lists
    /// the options that take no value.
    pub fn parse(argv: &[String], switches: &[&str], valued: &[&str]) -> Result<Args, ArgError> {
        let mut a = Args::default();
        let mut it = argv.iter();
        while let Some(arg) = it.next() {
            if let Some(name) = arg
                .strip_prefix("--")
                .or_else(|| arg.strip_prefix('-').filter(|n| n.len() == 1))
            {
                let (name, inline) = match name.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (name, None),
                };
                if switches.contains(&name) {
                    a.options.insert(name.into(), None);
                } else if valued.contains(&name) {
                    let v = match inline {
                        Some(v) => v,
                        None => it
                            .next()
                            .ok_or_else(|| format!("--{name} needs a value"))?
                            .clone(),
                    };
                    a.options.insert(name.into(), Some(v));
                } else {
                    return Err(format!("unknown option '{arg}'"));
                }
            } else {
                a.positional.push(arg.clone());
            }
        }
        Ok(a)
    }

    /// True if a switch was given.
    pub fn flag(&self, name: &str) -> bool {
        self.options.contains_key(name)
    }

    /// The value of an option, if given.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.options.get(name).and_then(|v| v.as_deref())
    }

    /// The value of an option parsed as `T`, or `default`.
    pub fn parsed<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, ArgError> {
        match self.value(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: cannot parse '{v}'")),
        }
    }

    /// The value of a required option.
    pub fn required(&self, name: &str) -> Result<&str, ArgError> {
        self.value(name)
            .ok_or_else(|| format!("--{name} is required"))
    }
}

/// Parses `HxW` (e.g. `224x224`).
pub fn resolution(s: &str) -> Result<(usize, usize), ArgError> {
    let (h, w) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("resolution '{s}' is not HxW"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("resolution '{s}': '{v}' is not a positive integer"))
    };
    Ok((parse(h)?, parse(w)?))
}

/// Parses a comma-separated list of resolutions.
pub fn resolutions(s: &str) -> Result<Vec<(usize, usize)>, ArgError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(resolution)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_options_and_positionals() {
        let a = Args::parse(
            &v(&["m.bin", "--runs", "5", "--json", "--threads=2"]),
            &["json"],
            &["runs", "threads"],
        )
        .unwrap();
        assert_eq!(a.positional, vec!["m.bin"]);
        assert!(a.flag("json"));
        assert_eq!(a.parsed("runs", 1usize).unwrap(), 5);
        assert_eq!(a.parsed("threads", 1usize).unwrap(), 2);
        assert!(Args::parse(&v(&["--bogus"]), &[], &[]).is_err());
        assert!(Args::parse(&v(&["--runs"]), &[], &["runs"]).is_err());
    }

    #[test]
    fn parses_resolutions() {
        assert_eq!(
            resolutions("224x224,480x640").unwrap(),
            vec![(224, 224), (480, 640)]
        );
        assert!(resolution("0x5").is_err());
        assert!(resolution("224").is_err());
    }
}
