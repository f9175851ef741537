//! Which function calls a replica may run: a built-in allow-list of functions that never write
//! and work in a read-only transaction on a standby, plus the names an operator adds.
//!
//! A built-in name counts when it is called unqualified or with the `pg_catalog` schema;
//! `myschema.count(...)` is someone's own function and needs the operator's word. An entry
//! of the operator's list is `name` (that name in any schema, or unqualified) or
//! `schema.name` (only calls written with that schema); entries are compared ASCII
//! case-insensitively.
//!
//! Owns only names. Where calls are found is decided in `quick` and `read_only`.

/// Built-in functions that only compute or read: aggregates, window functions, date, text,
/// math, array, JSON and full-text helpers, and the names the grammar itself calls for
/// keyword syntax (`EXTRACT`, `SUBSTRING ... FROM`, `AT TIME ZONE`, `LIKE ... ESCAPE`, ...).
/// Deliberately absent: `nextval`, `setval`, `set_config`, advisory locks, large objects
/// (`lo_*`), `txid_current` and `pg_current_wal_lsn` (which fail on a standby), and casts
/// written as calls (`int4(x)`), which could be anyone's function. Sorted for binary search.
#[rustfmt::skip]
const READ_ONLY_BUILTINS: [&str; 229] = [
    "abs", "age", "any_value", "array_agg", "array_append", "array_cat", "array_dims",
    "array_length", "array_lower", "array_ndims", "array_position", "array_positions",
    "array_prepend", "array_remove", "array_replace", "array_to_json", "array_to_string",
    "array_upper", "ascii", "avg", "bit_and", "bit_length", "bit_or", "bool_and", "bool_or",
    "btrim", "cardinality", "cbrt", "ceil", "ceiling", "char_length", "character_length", "chr",
    "clock_timestamp", "coalesce", "concat", "concat_ws", "corr", "count", "covar_pop",
    "covar_samp", "cume_dist", "current_database", "current_schema", "current_schemas",
    "current_setting", "date_bin", "date_part", "date_trunc", "decode", "degrees", "dense_rank",
    "div", "encode", "every", "exp", "extract", "first_value", "floor", "format", "gcd",
    "gen_random_uuid", "generate_series", "generate_subscripts", "greatest", "initcap",
    "is_normalized", "isempty", "isfinite", "json_agg", "json_array_elements",
    "json_array_elements_text", "json_array_length", "json_build_array", "json_build_object",
    "json_each", "json_each_text", "json_extract_path", "json_extract_path_text", "json_object",
    "json_object_agg", "json_object_keys", "json_populate_record", "json_strip_nulls",
    "json_to_record", "json_to_recordset", "json_typeof", "jsonb_agg", "jsonb_array_elements",
    "jsonb_array_elements_text", "jsonb_array_length", "jsonb_build_array", "jsonb_build_object",
    "jsonb_each", "jsonb_each_text", "jsonb_extract_path", "jsonb_extract_path_text",
    "jsonb_object", "jsonb_object_agg", "jsonb_object_keys", "jsonb_path_exists",
    "jsonb_path_match", "jsonb_path_query", "jsonb_path_query_array", "jsonb_path_query_first",
    "jsonb_populate_record", "jsonb_pretty", "jsonb_strip_nulls", "jsonb_to_record",
    "jsonb_to_recordset", "jsonb_typeof", "justify_days", "justify_hours", "justify_interval",
    "lag", "last_value", "lcm", "lead", "least", "left", "length", "like_escape", "ln", "log",
    "log10", "lower", "lower_inf", "lpad", "ltrim", "make_date", "make_interval", "make_time",
    "make_timestamp", "make_timestamptz", "max", "md5", "min", "mod", "mode", "normalize", "now",
    "nth_value", "ntile", "nullif", "num_nonnulls", "num_nulls", "octet_length", "overlaps",
    "overlay", "percent_rank", "percentile_cont", "percentile_disc", "pg_collation_for",
    "pg_is_in_recovery", "pg_typeof", "phraseto_tsquery", "pi", "plainto_tsquery", "position",
    "power", "quote_ident", "quote_literal", "quote_nullable", "radians", "random", "range_merge",
    "rank", "regexp_count", "regexp_instr", "regexp_like", "regexp_match", "regexp_matches",
    "regexp_replace", "regexp_split_to_array", "regexp_split_to_table", "regexp_substr", "repeat",
    "replace", "reverse", "right", "round", "row_number", "row_to_json", "rpad", "rtrim", "scale",
    "sign", "similar_to_escape", "split_part", "sqrt", "starts_with", "statement_timestamp",
    "stddev", "stddev_pop", "stddev_samp", "string_agg", "string_to_array", "strpos", "substr",
    "substring", "sum", "system_user", "timezone", "to_char", "to_date", "to_hex", "to_json",
    "to_jsonb", "to_number", "to_timestamp", "to_tsquery", "to_tsvector", "transaction_timestamp",
    "translate", "trim", "trim_array", "trunc", "ts_headline", "ts_rank", "unnest", "upper",
    "upper_inf", "var_pop", "var_samp", "variance", "version", "websearch_to_tsquery",
    "width_bucket", "xmlexists",
];

/// One part of a function name. `fold` is true for an unquoted word as written in the text,
/// which the server folds to lower case; parsed names and quoted identifiers compare exactly.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NamePart<'a> {
    pub(crate) text: &'a str,
    pub(crate) fold: bool,
}

impl NamePart<'_> {
    /// Whether this part names `lower` (a lower-case name) as the server would resolve it.
    fn is(self, lower: &str) -> bool {
        if self.fold {
            self.text.eq_ignore_ascii_case(lower)
        } else {
            self.text == lower
        }
    }
}

/// A called function's name as the parser gives it (already folded), kept in the route cache
/// so that the operator's list can be applied to a cached analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FunctionName {
    pub(crate) schema: Option<String>,
    pub(crate) name: String,
}

impl FunctionName {
    pub(crate) fn is_allowed(&self, allow: &[String]) -> bool {
        let schema = self.schema.as_deref().map(exact);
        is_allowed(schema, exact(&self.name), allow)
    }
}

fn exact(text: &str) -> NamePart<'_> {
    NamePart { text, fold: false }
}

/// Whether a call of `schema.name` (or plain `name`) may run on a replica.
pub(crate) fn is_allowed(
    schema: Option<NamePart<'_>>,
    name: NamePart<'_>,
    allow: &[String],
) -> bool {
    is_builtin(schema, name) || allowed_by_operator(schema, name, allow)
}

fn is_builtin(schema: Option<NamePart<'_>>, name: NamePart<'_>) -> bool {
    if schema.is_some_and(|schema| !schema.is("pg_catalog")) {
        return false;
    }
    // Built-in names are lower-case ASCII: a name that is not cannot be one of them.
    let mut buffer = [0u8; 32];
    let Some(lower) = buffer.get_mut(..name.text.len()) else {
        return false;
    };
    lower.copy_from_slice(name.text.as_bytes());
    if name.fold {
        lower.make_ascii_lowercase();
    }
    let Ok(lower) = std::str::from_utf8(lower) else {
        return false;
    };
    READ_ONLY_BUILTINS.binary_search(&lower).is_ok()
}

fn allowed_by_operator(schema: Option<NamePart<'_>>, name: NamePart<'_>, allow: &[String]) -> bool {
    allow.iter().any(|entry| {
        let (entry_schema, entry_name) = match entry.rsplit_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, entry.as_str()),
        };
        if !name.text.eq_ignore_ascii_case(entry_name) {
            return false;
        }
        match (entry_schema, schema) {
            (None, _) => true,
            (Some(wanted), Some(schema)) => schema.text.eq_ignore_ascii_case(wanted),
            (Some(_), None) => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(text: &str, fold: bool) -> NamePart<'_> {
        NamePart { text, fold }
    }

    #[test]
    fn the_builtin_list_is_sorted_and_unique() {
        assert!(READ_ONLY_BUILTINS.windows(2).all(|w| w[0] < w[1]));
        assert!(READ_ONLY_BUILTINS.iter().all(|n| n.len() <= 32));
    }

    #[test]
    fn builtins_unqualified_or_in_pg_catalog() {
        let none: &[String] = &[];
        assert!(is_allowed(None, part("COUNT", true), none));
        assert!(!is_allowed(None, part("COUNT", false), none));
        assert!(is_allowed(
            Some(part("PG_CATALOG", true)),
            part("lower", false),
            none
        ));
        assert!(!is_allowed(
            Some(part("app", true)),
            part("lower", true),
            none
        ));
        assert!(!is_allowed(None, part("nextval", true), none));
        assert!(!is_allowed(
            None,
            part("a_name_longer_than_thirty_two_bytes_x", true),
            none
        ));
    }

    #[test]
    fn operator_entries_with_and_without_schema() {
        let allow = vec!["report_total".to_owned(), "app.Safe_Fn".to_owned()];
        assert!(is_allowed(None, part("report_total", false), &allow));
        assert!(is_allowed(
            Some(part("x", false)),
            part("REPORT_TOTAL", true),
            &allow
        ));
        assert!(is_allowed(
            Some(part("APP", true)),
            part("safe_fn", true),
            &allow
        ));
        assert!(!is_allowed(None, part("safe_fn", true), &allow));
        assert!(!is_allowed(
            Some(part("other", true)),
            part("safe_fn", true),
            &allow
        ));
        let cached = FunctionName {
            schema: Some("app".into()),
            name: "safe_fn".into(),
        };
        assert!(cached.is_allowed(&allow));
        assert!(!cached.is_allowed(&[]));
    }
}
