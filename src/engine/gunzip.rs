//! Executors read whole `.gz` objects decompressed.
//!
//! DataFusion 55 sends a CSV scan to an executor without its compression
//! (datafusion-datasource-csv, `CsvSource::try_from_proto`: "The
//! compression type is not on the wire; CSV scans always deserialize as
//! uncompressed"), so a stock executor would parse gzip bytes as text. The
//! scheduler plans the scan knowing the file is gzip (which also keeps the
//! file in one piece: a gzip stream cannot be split), and the executor's
//! stores hand the scan the decompressed bytes. Ranged reads (Parquet
//! footers and pages) pass through untouched. Should a later DataFusion
//! carry the compression, the executor would decompress twice and fail
//! loudly on every compressed CSV (the cluster tests would say so).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreRegistry;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use url::Url;

/// An object-store registry whose stores read whole `.gz` objects
/// decompressed (see the module's documentation).
#[derive(Debug)]
pub struct GunzipRegistry<R>(pub R);

impl<R: ObjectStoreRegistry> ObjectStoreRegistry for GunzipRegistry<R> {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.0.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.0.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        Ok(Arc::new(GunzipReads(self.0.get_store(url)?)))
    }
}

/// A store whose whole-object reads of `*.gz` come back decompressed.
#[derive(Debug)]
struct GunzipReads(Arc<dyn ObjectStore>);

impl fmt::Display for GunzipReads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GunzipReads({})", self.0)
    }
}

#[async_trait]
impl ObjectStore for GunzipReads {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        options: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.0.put_opts(location, payload, options).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        options: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.0.put_multipart_opts(location, options).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let whole_gzip =
            location.as_ref().ends_with(".gz") && options.range.is_none() && !options.head;
        let result = self.0.get_opts(location, options).await?;
        if !whole_gzip {
            return Ok(result);
        }
        let (meta, range, attributes) = (
            result.meta.clone(),
            result.range.clone(),
            result.attributes.clone(),
        );
        let compressed = result.into_stream().map_err(DataFusionError::from).boxed();
        let name = location.to_string();
        let plain = FileCompressionType::GZIP
            .convert_stream(compressed)
            .map_err(|error| gunzip_error(&name, error))?
            .map_err(move |error| gunzip_error(&name, error))
            .boxed();
        Ok(GetResult {
            payload: GetResultPayload::Stream(plain),
            meta,
            range,
            attributes,
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.0.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.0.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.0.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.0.copy_opts(from, to, options).await
    }
}

/// A decompression error that names the file, so a failed task says which
/// raw file is damaged.
fn gunzip_error(location: &str, error: DataFusionError) -> object_store::Error {
    object_store::Error::Generic {
        store: "gunzip",
        source: format!("{location} is not a whole gzip file ({error}); extract the day again")
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt as _;
    use object_store::memory::InMemory;
    use std::io::Write;

    #[tokio::test]
    async fn whole_gz_objects_come_back_decompressed_and_the_rest_untouched() {
        let inner = Arc::new(InMemory::new());
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(b"a,b\n1,2\n").unwrap();
        let compressed = gzip.finish().unwrap();
        inner
            .put(&Path::from("t.csv.gz"), compressed.clone().into())
            .await
            .unwrap();
        inner
            .put(&Path::from("t.parquet"), b"PAR1".to_vec().into())
            .await
            .unwrap();
        let store = GunzipReads(inner);
        let whole = store.get(&Path::from("t.csv.gz")).await.unwrap();
        assert_eq!(whole.bytes().await.unwrap().as_ref(), b"a,b\n1,2\n");
        let ranged = store
            .get_range(&Path::from("t.csv.gz"), 0..2)
            .await
            .unwrap();
        assert_eq!(ranged.as_ref(), &compressed[..2]);
        let other = store.get(&Path::from("t.parquet")).await.unwrap();
        assert_eq!(other.bytes().await.unwrap().as_ref(), b"PAR1");
    }
}
