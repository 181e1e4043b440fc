//! `ringmq-loadgen plot DIR…`: several runs' percentile curves on one chart,
//! read back from each run's `produce.hgrm` / `e2e.hgrm` (any HdrHistogram
//! percentile-distribution file works), labelled by directory or `LABEL=DIR`.

use std::path::{Path, PathBuf};

use crate::cli::{PlotArgs, PlotMetric};
use crate::error::Error;
use crate::histo::parse_hgrm;
use crate::svg::{self, Series};

/// `LABEL=DIR` or `DIR` (labelled by its last component). The label may
/// itself hold `=` (`acks=all=runs/a`): the split whose right side is an
/// existing directory wins, else the first `=`.
pub fn label_and_dir(arg: &str) -> (String, PathBuf) {
    if !Path::new(arg).is_dir() {
        let splits: Vec<(&str, &str)> = arg
            .match_indices('=')
            .map(|(i, _)| (&arg[..i], &arg[i + 1..]))
            .filter(|(l, d)| !l.is_empty() && !d.is_empty())
            .collect();
        if let Some((label, dir)) = splits.iter().find(|(_, d)| Path::new(d).is_dir()).or(splits.first()) {
            return (label.to_string(), PathBuf::from(dir));
        }
    }
    let dir = PathBuf::from(arg);
    let label = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| arg.to_string());
    (label, dir)
}

fn read_curve(path: &Path) -> Result<Vec<crate::histo::CurvePoint>, Error> {
    let text = std::fs::read_to_string(path).map_err(Error::file("cannot read", path))?;
    parse_hgrm(&text).map_err(|detail| Error::Parse { path: path.to_path_buf(), detail })
}

/// The chart's series for the given runs.
pub fn series(args: &PlotArgs) -> Result<Vec<Series>, Error> {
    let mut out = Vec::new();
    for (i, run) in args.runs.iter().enumerate() {
        let (label, dir) = label_and_dir(run);
        if matches!(args.metric, PlotMetric::Produce | PlotMetric::Both) {
            out.push(Series {
                label: format!("{label}: produce"),
                points: read_curve(&dir.join("produce.hgrm"))?,
                color: i,
                dashed: false,
            });
        }
        if matches!(args.metric, PlotMetric::E2e | PlotMetric::Both) {
            out.push(Series {
                label: format!("{label}: end-to-end"),
                points: read_curve(&dir.join("e2e.hgrm"))?,
                color: i,
                dashed: true,
            });
        }
    }
    Ok(out)
}

pub fn command(args: &PlotArgs) -> Result<(), Error> {
    let series = series(args)?;
    let subtitle = match args.metric {
        PlotMetric::Both => "solid: produce ack latency · dashed: end-to-end latency",
        PlotMetric::Produce => "produce ack latency",
        PlotMetric::E2e => "end-to-end latency",
    };
    let svg = svg::render(&args.title, subtitle, &series);
    std::fs::write(&args.out, svg).map_err(Error::file("cannot write", &args.out))?;
    println!("wrote {} ({} runs)", args.out.display(), args.runs.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_labelled_by_directory_or_label() {
        assert_eq!(label_and_dir("kafka=/tmp/x/run1"), ("kafka".to_string(), PathBuf::from("/tmp/x/run1")));
        assert_eq!(label_and_dir("/nonexistent/run2"), ("run2".to_string(), PathBuf::from("/nonexistent/run2")));
        let tmp = std::env::temp_dir();
        let arg = format!("acks=all={}", tmp.display());
        assert_eq!(label_and_dir(&arg), ("acks=all".to_string(), tmp));
    }
}
