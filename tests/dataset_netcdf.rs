//! DSSTNE NetCDF schema: files written by `ncgen` from CDL in DSSTNE's layouts load; our
//! writer's output has the names and types DSSTNE expects (`ncdump -h`); datasets of every
//! kind round-trip, several per file.

use std::path::{Path, PathBuf};
use std::process::Command;

use moira::dataset::io::netcdf::{read, read_dataset, write};
use moira::dataset::{Attributes, DataType, Dataset};
use moira::sparse::Csr;

/// Builds `name.nc` in `dir` from CDL with `ncgen -4` (an independent writer).
fn ncgen(dir: &Path, name: &str, cdl: &str) -> PathBuf {
    let cdl_path = dir.join(format!("{name}.cdl"));
    let nc_path = dir.join(format!("{name}.nc"));
    std::fs::write(&cdl_path, cdl).unwrap();
    let out = Command::new("ncgen")
        .args(["-4", "-o"])
        .arg(&nc_path)
        .arg(&cdl_path)
        .output()
        .expect("ncgen (package netcdf-bin) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    nc_path
}

fn row(csr: &Csr, r: usize) -> (Vec<u32>, Option<Vec<f32>>) {
    let (c, v) = csr.row(r);
    (c.to_vec(), v.map(<[f32]>::to_vec))
}

/// Exactly what DSSTNE's `generateNetCDF -t analog` writes (uint offsets).
const GENERATE_NETCDF_ANALOG: &str = r#"netcdf gen {
dimensions:
	examplesDim0 = 3 ;
	sparseDataDim0 = 4 ;
variables:
	uint sparseStart0(examplesDim0) ;
	uint sparseEnd0(examplesDim0) ;
	uint sparseIndex0(sparseDataDim0) ;
	float sparseData0(sparseDataDim0) ;
// global attributes:
		:datasets = 1U ;
		:name0 = "gl_input" ;
		:attributes0 = 1U ;
		:kind0 = 0U ;
		:dataType0 = 4U ;
		:dimensions0 = 1U ;
		:width0 = 128U ;
data:
 sparseStart0 = 0, 2, 2 ;
 sparseEnd0 = 2, 2, 4 ;
 sparseIndex0 = 5, 7, 0, 127 ;
 sparseData0 = 1.5, 2, 3, 4 ;
}
"#;

#[test]
fn generate_netcdf_layout_with_uint_offsets_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = ncgen(dir.path(), "gen", GENERATE_NETCDF_ANALOG);
    let all = read(&path).unwrap();
    assert_eq!(all.len(), 1);
    let ds = &all[0];
    assert_eq!(ds.shape_parts(), ("gl_input".into(), vec![128], 3, true));
    assert_eq!(ds.attributes(), Attributes(Attributes::SPARSE));
    assert_eq!(ds.data_type(), DataType::Float);
    let csr = ds.sparse_data().unwrap();
    assert_eq!(row(csr, 0), (vec![5, 7], Some(vec![1.5, 2.0])));
    assert_eq!(row(csr, 1), (vec![], Some(vec![])));
    assert_eq!(row(csr, 2), (vec![0, 127], Some(vec![3.0, 4.0])));
}

#[test]
fn uint64_offsets_uchar_values_and_non_contiguous_rows_load() {
    let cdl = r#"netcdf wide {
dimensions:
	examplesDim0 = 2 ;
	sparseDataDim0 = 4 ;
variables:
	uint64 sparseStart0(examplesDim0) ;
	uint64 sparseEnd0(examplesDim0) ;
	uint sparseIndex0(sparseDataDim0) ;
	ubyte sparseData0(sparseDataDim0) ;
// global attributes:
		:datasets = 1U ;
		:name0 = "u8" ;
		:attributes0 = 1U ;
		:kind0 = 0U ;
		:dataType0 = 8U ;
		:dimensions0 = 2U ;
		:width0 = 4U ;
		:height0 = 2U ;
data:
 sparseStart0 = 2, 0 ;
 sparseEnd0 = 4, 1 ;
 sparseIndex0 = 1, 9, 3, 7 ;
 sparseData0 = 128, 0, 64, 255 ;
}
"#;
    let dir = tempfile::tempdir().unwrap();
    let ds = read_dataset(&ncgen(dir.path(), "wide", cdl), 0).unwrap();
    assert_eq!((ds.width(), ds.height(), ds.stride()), (4, 2, 8));
    assert_eq!(ds.data_type(), DataType::UChar);
    let csr = ds.sparse_data().unwrap();
    assert_eq!(row(csr, 0), (vec![3, 7], Some(vec![0.25, 255.0 / 256.0])));
    assert_eq!(row(csr, 1), (vec![1], Some(vec![0.5])));
}

#[test]
fn schema_violations_name_the_item() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // Column 200 outside a width of 128.
        (
            GENERATE_NETCDF_ANALOG.replace("5, 7, 0, 127", "5, 7, 0, 200"),
            "sparseStart0",
            "out of range",
        ),
        (
            GENERATE_NETCDF_ANALOG.replace(":dataType0 = 4U ;", ""),
            "dataType0",
            "missing",
        ),
        (
            GENERATE_NETCDF_ANALOG.replace("sparseEnd0 = 2, 2, 4", "sparseEnd0 = 2, 2, 5"),
            "sparseStart0",
            "outside the 4 stored entries",
        ),
        (
            GENERATE_NETCDF_ANALOG.replace(":dimensions0 = 1U", ":dimensions0 = 4U"),
            "dimensions0",
            "not 1, 2 or 3",
        ),
    ];
    for (i, (cdl, item, what)) in cases.iter().enumerate() {
        let path = ncgen(dir.path(), &format!("bad{i}"), cdl);
        let err = read(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!("`{item}`")) && err.contains(what),
            "case {i}: {err}"
        );
    }
    let err = read(&dir.path().join("missing.nc"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.nc"), "{err}");
}

fn sample_datasets() -> Vec<Dataset> {
    let boolean = Csr::try_new(256, vec![0, 2, 3], vec![1, 255, 7], None).unwrap();
    let analog = Csr::try_new(
        6,
        vec![0, 1, 1, 3],
        vec![5, 0, 2],
        Some(vec![0.5, -1.0, 3.25]),
    )
    .unwrap();
    vec![
        Dataset::sparse("input", vec![256], boolean).unwrap(),
        Dataset::sparse("output", vec![3, 2], analog)
            .unwrap()
            .with_index(vec![2, 0, 0, 1])
            .unwrap()
            .with_weights(vec![1.0, 0.5, 2.0, 1.0])
            .unwrap(),
        Dataset::dense(
            "dense",
            vec![2, 1, 2],
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        )
        .unwrap()
        .with_extra_attributes(Attributes::RECURRENT),
        Dataset::one_hot("label", vec![5], &[4, 0, 2]).unwrap(),
    ]
}

#[test]
fn several_datasets_of_every_kind_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("multi.nc");
    let datasets = sample_datasets();
    write(&path, &datasets.iter().collect::<Vec<_>>()).unwrap();
    let back = read(&path).unwrap();
    assert_eq!(back, datasets);
    assert_eq!(back[1].attributes().0, 1 | 64 | 128);
    assert_eq!(back[1].examples(), 4);
    assert_eq!(back[1].unique_examples(), 3);
    assert_eq!(back[3].attributes().0, Attributes::BOOLEAN);
    assert_eq!(read_dataset(&path, 2).unwrap(), datasets[2]);
    assert!(read_dataset(&path, 4).is_err());
    // Only the output file is left in the directory (no temporary file).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn ncdump_shows_the_names_and_types_dsstne_expects() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.nc");
    let datasets = sample_datasets();
    write(&path, &datasets.iter().collect::<Vec<_>>()).unwrap();
    let out = Command::new("ncdump")
        .arg("-h")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let header = String::from_utf8(out.stdout).unwrap();
    for expected in [
        ":datasets = 4U ;",
        ":name0 = \"input\" ;",
        ":attributes0 = 3U ;",
        ":kind0 = 0U ;",
        ":dataType0 = 0U ;",
        ":dimensions0 = 1U ;",
        ":width0 = 256U ;",
        "examplesDim0 = 2 ;",
        "sparseDataDim0 = 3 ;",
        "uint sparseStart0(examplesDim0) ;",
        "uint sparseEnd0(examplesDim0) ;",
        "uint sparseIndex0(sparseDataDim0) ;",
        ":attributes1 = 193U ;",
        ":dataType1 = 4U ;",
        ":dimensions1 = 2U ;",
        ":height1 = 2U ;",
        "examplesDim1 = 4 ;",
        "uniqueExamplesDim1 = 3 ;",
        "uint sparseStart1(uniqueExamplesDim1) ;",
        "float sparseData1(sparseDataDim1) ;",
        "float dataWeight1(examplesDim1) ;",
        "uint index1(examplesDim1) ;",
        ":attributes2 = 8U ;",
        ":length2 = 2U ;",
        "dataDim2 = 8 ;",
        "float data2(dataDim2) ;",
        ":attributes3 = 2U ;",
        "uint data3(dataDim3) ;",
    ] {
        assert!(
            header.contains(expected),
            "missing `{expected}` in\n{header}"
        );
    }
    assert!(
        !header.contains("sparseData0"),
        "boolean data has no values"
    );
    assert!(!header.contains("uniqueExamplesDim0"));
}

#[test]
fn datasets_dsstne_cannot_read_are_refused_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.nc");
    let empty = Dataset::sparse(
        "e",
        vec![4],
        Csr::try_new(4, vec![0, 0], vec![], None).unwrap(),
    )
    .unwrap();
    let err = write(&path, &[&empty]).unwrap_err().to_string();
    assert!(err.contains("without non-zeros"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
