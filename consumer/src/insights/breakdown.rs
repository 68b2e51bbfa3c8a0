//! Breakdown tables: logins counted by a row key (app version, locale) and a column key
//! (device type), with a cap on the number of cells.
//!
//! Every cleaned event adds to two of these, so a cell is found by hashing rather than by
//! comparing strings down a sorted tree (which took ~11% of the processing profile). The keys
//! come from the input, so the hasher is seeded per table, and the cell cap bounds both memory
//! and what crafted keys could do to the hash tables. The serialized form is the sorted nested
//! map it always was, so partial insights written by older versions still load.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// Cells a table may hold before further keys are counted under [`OTHER`].
pub const MAX_BREAKDOWN_CELLS: usize = 10_000;
/// Row or column key that collects the keys beyond [`MAX_BREAKDOWN_CELLS`].
pub const OTHER: &str = "(other)";

type Hasher = foldhash::fast::RandomState;
type Row = HashMap<String, u64, Hasher>;

/// Logins counted by row key and column key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "Sorted", into = "Sorted")]
pub struct Breakdown {
    rows: HashMap<String, Row, Hasher>,
    /// Cells over all rows, kept so the cap costs nothing to check.
    cells: usize,
}

/// The serialized form, sorted so reports and snapshots are stable.
type Sorted = BTreeMap<String, BTreeMap<String, u64>>;

impl From<Sorted> for Breakdown {
    fn from(sorted: Sorted) -> Self {
        let mut table = Breakdown::default();
        for (row, cells) in &sorted {
            for (column, n) in cells {
                table.add(row, column, *n);
            }
        }
        table
    }
}

impl From<Breakdown> for Sorted {
    fn from(table: Breakdown) -> Self {
        table
            .rows
            .into_iter()
            .map(|(row, cells)| (row, cells.into_iter().collect()))
            .collect()
    }
}

impl PartialEq for Breakdown {
    fn eq(&self, other: &Self) -> bool {
        self.rows == other.rows
    }
}

impl Breakdown {
    /// Adds `n` to the cell (`row`, `column`). Once the table holds [`MAX_BREAKDOWN_CELLS`]
    /// cells, a row key not seen before is counted under the row [`OTHER`], and a column key
    /// its row has not seen under the column [`OTHER`]: both keys come from the input, so
    /// either could grow the table without end. At most two cells per row are added past the
    /// cap.
    pub fn add(&mut self, row: &str, column: &str, n: u64) {
        // Look up before inserting so the common case (a known cell) allocates nothing.
        if let Some(cell) = self.rows.get_mut(row).and_then(|r| r.get_mut(column)) {
            *cell += n;
            return;
        }
        let full = self.cells >= MAX_BREAKDOWN_CELLS;
        let row = if full && !self.rows.contains_key(row) {
            OTHER
        } else {
            row
        };
        let cells = self.rows.entry(row.to_owned()).or_default();
        // A row new to the table (the OTHER row, when full) takes its first column as it is.
        let column = if full && !cells.is_empty() && !cells.contains_key(column) {
            OTHER
        } else {
            column
        };
        let before = cells.len();
        *cells.entry(column.to_owned()).or_default() += n;
        self.cells += cells.len() - before;
    }

    /// The count in cell (`row`, `column`), 0 if there is none.
    pub fn get(&self, row: &str, column: &str) -> u64 {
        self.rows
            .get(row)
            .and_then(|cells| cells.get(column))
            .copied()
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Number of cells over all rows.
    pub fn cells(&self) -> usize {
        self.cells
    }

    /// Every row key with its total, in no particular order.
    pub fn row_totals(&self) -> impl Iterator<Item = (&str, u64)> {
        self.rows
            .iter()
            .map(|(row, cells)| (row.as_str(), cells.values().sum()))
    }

    /// Every cell as (row, column, count), in no particular order.
    pub fn cells_iter(&self) -> impl Iterator<Item = (&str, &str, u64)> {
        self.rows.iter().flat_map(|(row, cells)| {
            cells
                .iter()
                .map(move |(column, n)| (row.as_str(), column.as_str(), *n))
        })
    }

    /// Adds every cell of `other`.
    pub fn merge(&mut self, other: &Breakdown) {
        for (row, column, n) in other.cells_iter() {
            self.add(row, column, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cells() {
        let mut t = Breakdown::default();
        t.add("2.3.0", "ios", 1);
        t.add("2.3.0", "ios", 2);
        t.add("2.3.0", "android", 1);
        assert_eq!(t.get("2.3.0", "ios"), 3);
        assert_eq!(t.get("2.3.0", "web"), 0);
        assert_eq!(t.get("9", "ios"), 0);
        assert_eq!(t.cells(), 2);
    }

    #[test]
    fn cells_are_capped() {
        let mut t = Breakdown::default();
        for i in 0..(MAX_BREAKDOWN_CELLS + 50) {
            t.add(&format!("v{i}"), "ios", 1);
        }
        assert_eq!(t.cells(), MAX_BREAKDOWN_CELLS + 1);
        assert_eq!(t.get(OTHER, "ios"), 50);
        // New columns are capped too: each row gains at most an OTHER column.
        for i in 0..50 {
            t.add("v0", &format!("d{i}"), 1);
            t.add(OTHER, &format!("d{i}"), 1);
        }
        assert_eq!(t.get("v0", OTHER), 50);
        assert_eq!(t.get(OTHER, OTHER), 50);
        assert_eq!(t.cells(), MAX_BREAKDOWN_CELLS + 3);
    }

    #[test]
    fn serializes_as_a_sorted_nested_map() {
        let mut t = Breakdown::default();
        t.add("b", "ios", 1);
        t.add("a", "web", 2);
        t.add("a", "android", 3);
        let json = serde_json::to_string(&t).expect("serialize");
        assert_eq!(json, r#"{"a":{"android":3,"web":2},"b":{"ios":1}}"#);
        let back: Breakdown = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, t);
        assert_eq!(back.cells(), 3);
    }
}
