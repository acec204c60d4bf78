//! `engine/include/shufflenet.h` and the Rust exports agree: the same functions, with
//! the same parameter names and C types, and the same enum constants and values.
//! Both sides are read from source (the header, and every `#[no_mangle]` function and
//! `#[repr(C)]` enum in `engine/src/capi/`), so any drift fails here. `bench-android/
//! test-c-example.sh` adds the link-level check: a C file taking the address of every
//! declared function links against `libshufflenet.a`.

use std::collections::BTreeMap;
use std::path::Path;

/// A function signature as C type tokens: return type, then `(name, type)` per
/// parameter.
#[derive(Debug, PartialEq, Eq)]
struct Sig {
    ret: Vec<String>,
    params: Vec<(String, Vec<String>)>,
}

/// Enum constants by C name.
type Consts = BTreeMap<String, i64>;

fn tokens(c: &str) -> Vec<String> {
    c.replace('*', " * ")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Removes `/* */` and `//` comments.
fn strip_comments(src: &str) -> String {
    let mut out = String::new();
    let mut rest = src;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find("*/").expect("unterminated comment");
        rest = &rest[i + end + 2..];
    }
    out.push_str(rest);
    out.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The header's functions, enums (by typedef name) and opaque struct typedefs.
fn parse_header(src: &str) -> (BTreeMap<String, Sig>, BTreeMap<String, Consts>, Vec<String>) {
    let mut code = String::new();
    let mut skip = 0; // inside `#ifdef __cplusplus`
    for line in strip_comments(src).lines() {
        let t = line.trim();
        if t.starts_with("#ifdef __cplusplus") {
            skip += 1;
        } else if t.starts_with("#endif") && skip > 0 {
            skip -= 1;
        } else if skip == 0 && !t.starts_with('#') {
            code.push_str(t);
            code.push('\n');
        }
    }
    let (mut fns, mut enums, mut opaque) = (BTreeMap::new(), BTreeMap::new(), Vec::new());
    for decl in code.split(';').map(str::trim).filter(|d| !d.is_empty()) {
        if let Some(body) = decl.strip_prefix("typedef enum") {
            let (open, close) = (body.find('{').unwrap(), body.rfind('}').unwrap());
            let name = body[close + 1..].trim().to_string();
            assert_eq!(body[..open].trim(), name, "enum tag and typedef differ");
            let consts = body[open + 1..close]
                .split(',')
                .map(|c| {
                    let (k, v) = c
                        .split_once('=')
                        .expect("enum constants need explicit values");
                    (k.trim().to_string(), v.trim().parse().unwrap())
                })
                .collect();
            enums.insert(name, consts);
        } else if let Some(body) = decl.strip_prefix("typedef struct") {
            let t = tokens(body);
            assert_eq!(t.len(), 2, "opaque typedef: {decl}");
            opaque.push(format!("{} {}", t[0], t[1]));
        } else {
            let open = decl
                .find('(')
                .unwrap_or_else(|| panic!("not a function: {decl}"));
            let mut head = tokens(&decl[..open]);
            let name = head.pop().unwrap();
            let inner = decl[open + 1..decl.rfind(')').unwrap()].trim();
            let params = if inner == "void" {
                Vec::new()
            } else {
                inner
                    .split(',')
                    .map(|p| {
                        let mut t = tokens(p);
                        let pname = t.pop().unwrap();
                        assert!(!t.is_empty() && pname != "*", "{name}: unnamed parameter");
                        (pname, t)
                    })
                    .collect()
            };
            let dup = fns.insert(name.clone(), Sig { ret: head, params });
            assert!(dup.is_none(), "{name} declared twice");
        }
    }
    (fns, enums, opaque)
}

/// The C spelling of a Rust type used at the boundary.
fn rust_to_c(ty: &str) -> Vec<String> {
    let mut quals = Vec::new();
    let mut rest = ty.trim();
    loop {
        if let Some(r) = rest.strip_prefix("*const") {
            quals.push(true);
            rest = r.trim_start();
        } else if let Some(r) = rest.strip_prefix("*mut") {
            quals.push(false);
            rest = r.trim_start();
        } else {
            break;
        }
    }
    let base = match rest {
        "c_char" => "char",
        "c_void" => "void",
        "c_int" => "int",
        "f32" => "float",
        "usize" => "size_t",
        "SnModel" => "sn_model",
        "SnSession" => "sn_session",
        "SnStatus" => "sn_status",
        "SnLayout" => "sn_layout",
        "()" => "void",
        other => panic!("no C spelling for Rust type {other:?}"),
    };
    let mut c = Vec::new();
    if quals.last() == Some(&true) {
        c.push("const".to_string());
    }
    c.push(base.to_string());
    for k in (0..quals.len()).rev() {
        c.push("*".into());
        if k > 0 && quals[k - 1] {
            c.push("const".into());
        }
    }
    c
}

/// The Rust exports (`#[no_mangle]` functions) and `#[repr(C)]` enums (Rust name ->
/// variant -> value) of the capi module.
fn parse_rust(
    dir: &Path,
) -> (
    BTreeMap<String, Sig>,
    BTreeMap<String, BTreeMap<String, i64>>,
) {
    let (mut fns, mut enums) = (BTreeMap::new(), BTreeMap::new());
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for f in files {
        let src = strip_comments(&std::fs::read_to_string(&f).unwrap());
        let src = src.split("#[cfg(test)]").next().unwrap();
        for chunk in src.split("#[no_mangle]").skip(1) {
            let head = &chunk[..chunk.find('{').unwrap()];
            let head = head.split_whitespace().collect::<Vec<_>>().join(" ");
            let after = head
                .split("extern \"C\" fn ")
                .nth(1)
                .unwrap_or_else(|| panic!("#[no_mangle] item is not an extern \"C\" fn: {head}"));
            assert!(head.starts_with("pub "), "export not public: {head}");
            let open = after.find('(').unwrap();
            let close = after.rfind(')').unwrap();
            let name = after[..open].trim().to_string();
            let ret = after[close + 1..]
                .trim()
                .strip_prefix("->")
                .map_or("()", str::trim);
            let params = after[open + 1..close]
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (n, t) = p.split_once(':').unwrap();
                    (n.trim().to_string(), rust_to_c(t))
                })
                .collect();
            let dup = fns.insert(
                name.clone(),
                Sig {
                    ret: rust_to_c(ret),
                    params,
                },
            );
            assert!(dup.is_none(), "{name} exported twice");
        }
        for chunk in src.split("#[repr(C)]").skip(1) {
            let Some(rest) = chunk.split("pub enum ").nth(1) else {
                continue;
            };
            let name = rest[..rest.find('{').unwrap()].trim().to_string();
            let body = &rest[rest.find('{').unwrap() + 1..rest.find('}').unwrap()];
            let variants = body
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("#["))
                .map(|l| {
                    let (k, v) = l
                        .trim_end_matches(',')
                        .split_once('=')
                        .unwrap_or_else(|| panic!("{name}: variant without a value: {l}"));
                    (k.trim().to_string(), v.trim().parse().unwrap())
                })
                .collect();
            enums.insert(name, variants);
        }
    }
    (fns, enums)
}

/// `ErrNullPointer` -> `ERR_NULL_POINTER`.
fn upper_snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

#[test]
fn header_declares_exactly_the_rust_exports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(root.join("include/shufflenet.h")).unwrap();
    let (c_fns, c_enums, opaque) = parse_header(&header);
    let (rs_fns, rs_enums) = parse_rust(&root.join("src/capi"));

    let c_names: Vec<_> = c_fns.keys().collect();
    let rs_names: Vec<_> = rs_fns.keys().collect();
    assert_eq!(c_names, rs_names, "declared (left) vs exported (right)");
    for (name, sig) in &c_fns {
        assert_eq!(
            sig, &rs_fns[name],
            "signature of {name}: header (left), Rust (right)"
        );
    }
    assert!(
        c_fns.len() >= 17,
        "too few functions parsed: {}",
        c_fns.len()
    );

    // Opaque handles: the struct tag is the Rust type's name.
    assert_eq!(opaque, ["SnModel sn_model", "SnSession sn_session"]);

    // Enums: `SnStatus::ErrIo = 3` is `SN_ERR_IO = 3`, `SnLayout::Nhwc` is `SN_LAYOUT_NHWC`.
    let prefixes = [
        ("SnStatus", "sn_status", "SN_"),
        ("SnLayout", "sn_layout", "SN_LAYOUT_"),
    ];
    assert_eq!(
        rs_enums.len(),
        prefixes.len(),
        "a #[repr(C)] enum the header lacks"
    );
    assert_eq!(c_enums.len(), prefixes.len(), "a header enum Rust lacks");
    for (rs, c, prefix) in prefixes {
        let want: Consts = rs_enums[rs]
            .iter()
            .map(|(k, v)| (format!("{prefix}{}", upper_snake(k)), *v))
            .collect();
        assert_eq!(c_enums[c], want, "{c} (left) vs {rs} (right)");
    }
    assert_eq!(c_enums["sn_status"]["SN_ERR_INTERNAL"], 9);
}

#[test]
fn the_parsers_see_what_they_should() {
    assert_eq!(rust_to_c("*mut *mut SnModel"), ["sn_model", "*", "*"]);
    assert_eq!(rust_to_c("*const c_char"), ["const", "char", "*"]);
    assert_eq!(rust_to_c("*const *mut f32"), ["float", "*", "const", "*"]);
    let (fns, enums, _) = parse_header(
        "/* x */ typedef enum e { A = 0, B = 7 } e;\n#ifdef __cplusplus\nextern \"C\" {\n#endif\n\
         const char *f(void); // y\nint g(const sn_model *m, size_t n);",
    );
    assert_eq!(enums["e"]["B"], 7);
    assert_eq!(fns["f"].ret, ["const", "char", "*"]);
    assert!(fns["f"].params.is_empty());
    assert_eq!(fns["g"].params[0].1, ["const", "sn_model", "*"]);
    assert_eq!(fns["g"].params[1].0, "n");
    assert_eq!(upper_snake("ErrNullPointer"), "ERR_NULL_POINTER");
}
