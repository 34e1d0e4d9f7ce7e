# Writes a table the way Spark 3.5 writes `spark.read.format("image" | "binaryFile")
# .load(...).write.partitionBy("label").parquet(out)`: Spark's exact schemas
# (INT96 timestamps, Spark's nullability, the row-metadata key), one folder per
# `label=N`, part files named part-NNNNN-<uuid>.c000.<codec>.parquet with
# Hadoop's hidden .crc companions, and a _SUCCESS marker.
#
# Input: a JSON spec on stdin:
#   { "out": dir, "kind": "image" | "binaryFile", "compression": "snappy" | "gzip" | "zstd" | "none",
#     "rowGroupRows": n, "filesPerPartition": k, "partitionBy": true,
#     "rows": [{ "file": path, "label": int }, ...],   (partitionBy false: `label` becomes an int field,
#                                                     as after df.withColumn("label", ...))
#     "undecodable": [row indices whose image is replaced by something no decoder reads],
#     "corruptRowGroup": { "partFile": i, "rowGroup": j } }
# Output: JSON on stdout: the part files written with their row groups (row counts, byte ranges).
import io, json, os, sys, uuid
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

spec = json.load(sys.stdin)
out = spec['out']
kind = spec['kind']
codec = spec.get('compression', 'snappy')
rg_rows = int(spec.get('rowGroupRows', 64))
per_part = int(spec.get('filesPerPartition', 1))
partition_by = spec.get('partitionBy', True)
undecodable = set(spec.get('undecodable', []))
rows = spec['rows']

# CV_8UC1, CV_8UC3, CV_8UC4 (OpenCV type codes Spark's ImageSchema stores)
OCV = {1: 0, 3: 16, 4: 24}

IMAGE_STRUCT = pa.struct([
    pa.field('origin', pa.string(), True),
    pa.field('height', pa.int32(), False),
    pa.field('width', pa.int32(), False),
    pa.field('nChannels', pa.int32(), False),
    pa.field('mode', pa.int32(), False),
    pa.field('data', pa.binary(), False),
])
SCHEMAS = {
    'image': pa.schema([pa.field('image', IMAGE_STRUCT, True)]),
    'binaryFile': pa.schema([
        pa.field('path', pa.string(), False),
        pa.field('modificationTime', pa.timestamp('us'), False),
        pa.field('length', pa.int64(), False),
        pa.field('content', pa.binary(), True),
    ]),
}
SPARK_JSON = {
    'image': {'type': 'struct', 'fields': [{'name': 'image', 'nullable': True, 'metadata': {}, 'type': {
        'type': 'struct', 'fields': [
            {'name': 'origin', 'type': 'string', 'nullable': True, 'metadata': {}},
            {'name': 'height', 'type': 'integer', 'nullable': False, 'metadata': {}},
            {'name': 'width', 'type': 'integer', 'nullable': False, 'metadata': {}},
            {'name': 'nChannels', 'type': 'integer', 'nullable': False, 'metadata': {}},
            {'name': 'mode', 'type': 'integer', 'nullable': False, 'metadata': {}},
            {'name': 'data', 'type': 'binary', 'nullable': False, 'metadata': {}}]}}]},
    'binaryFile': {'type': 'struct', 'fields': [
        {'name': 'path', 'type': 'string', 'nullable': False, 'metadata': {}},
        {'name': 'modificationTime', 'type': 'timestamp', 'nullable': False, 'metadata': {}},
        {'name': 'length', 'type': 'long', 'nullable': False, 'metadata': {}},
        {'name': 'content', 'type': 'binary', 'nullable': True, 'metadata': {}}]},
}


def image_row(i, r):
    origin = 'file://' + os.path.abspath(r['file'])
    if i in undecodable:
        # Spark's invalidImageRow: what the image source keeps for a file it cannot decode.
        return {'origin': origin, 'height': -1, 'width': -1, 'nChannels': -1, 'mode': -1, 'data': b''}
    im = Image.open(r['file'])
    im.load()
    if im.mode not in ('L', 'RGB', 'RGBA'):
        im = im.convert('RGBA' if 'transparency' in im.info or im.mode in ('LA', 'PA') else 'RGB')
    a = np.asarray(im)
    if a.ndim == 2:
        a = a[:, :, None]
    c = a.shape[2]
    if c >= 3:
        a = a[:, :, [2, 1, 0] + ([3] if c == 4 else [])]  # RGB(A) -> BGR(A), as ImageIO rows are stored
    return {'origin': origin, 'height': a.shape[0], 'width': a.shape[1], 'nChannels': c, 'mode': OCV[c],
            'data': np.ascontiguousarray(a).tobytes()}


def binary_row(i, r):
    p = os.path.abspath(r['file'])
    with open(p, 'rb') as f:
        data = f.read()
    if i in undecodable:
        data = b'\xff\xd8\xff\xe0 this is not a JPEG any more ' + data[-64:]
    st = os.stat(p)
    return {'path': 'file:' + p, 'modificationTime': int(st.st_mtime * 1e6), 'length': len(data), 'content': data}


def write_part(path, recs, labels):
    schema = SCHEMAS[kind]
    spark = json.loads(json.dumps(SPARK_JSON[kind]))
    if kind == 'image':
        table = pa.table({'image': pa.array(recs, type=IMAGE_STRUCT)}, schema=schema)
    else:
        table = pa.Table.from_pylist(recs, schema=schema)
    if not partition_by:
        table = table.append_column(pa.field('label', pa.int32(), True), pa.array(labels, type=pa.int32()))
        spark['fields'].append({'name': 'label', 'type': 'integer', 'nullable': True, 'metadata': {}})
    table = table.replace_schema_metadata({
        'org.apache.spark.version': '3.5.1',
        'org.apache.spark.sql.parquet.row.metadata': json.dumps(spark, separators=(',', ':')),
    })
    pq.write_table(
        table, path, row_group_size=rg_rows, compression=None if codec == 'none' else codec,
        use_deprecated_int96_timestamps=True,  # spark.sql.parquet.outputTimestampType=INT96 (the default)
        use_dictionary=['path', 'image.origin'], data_page_version='1.0', version='2.6',
        write_statistics=True)
    with open(os.path.join(os.path.dirname(path), '.' + os.path.basename(path) + '.crc'), 'wb') as f:
        f.write(b'crc\0')  # a Hadoop checksum companion: hidden, must be ignored


os.makedirs(out, exist_ok=True)
groups = {}
for i, r in enumerate(rows):
    groups.setdefault(int(r['label']) if partition_by else None, []).append(i)

ext = {'snappy': 'snappy', 'gzip': 'gz', 'zstd': 'zstd', 'none': ''}[codec]
written = []
part = 0
job = uuid.UUID(int=0x5eed0000 + len(rows))  # one write job: one uuid in every file name, as Spark
for label in sorted(groups, key=lambda x: -1 if x is None else x):
    idx = groups[label]
    d = out if label is None else os.path.join(out, f'label={label}')
    os.makedirs(d, exist_ok=True)
    chunks = [idx[k::per_part] for k in range(per_part)]
    for chunk in chunks:
        if not chunk:
            continue
        recs = [image_row(i, rows[i]) if kind == 'image' else binary_row(i, rows[i]) for i in chunk]
        name = f'part-{part:05d}-{job}.c000{"." + ext if ext else ""}.parquet'
        p = os.path.join(d, name)
        write_part(p, recs, [int(rows[i]['label']) for i in chunk])
        md = pq.ParquetFile(p).metadata
        written.append({'path': p, 'rows': chunk, 'label': label,
                        'rowGroups': [md.row_group(g).num_rows for g in range(md.num_row_groups)]})
        part += 1
open(os.path.join(out, '_SUCCESS'), 'wb').close()
open(os.path.join(out, '._SUCCESS.crc'), 'wb').close()

cr = spec.get('corruptRowGroup')
if cr:
    w = written[cr['partFile']]
    md = pq.ParquetFile(w['path']).metadata
    rg = md.row_group(cr['rowGroup'])
    # The image bytes column of that row group: garble its pages (header and data) in place.
    col = next(rg.column(c) for c in range(rg.num_columns) if rg.column(c).path_in_schema in ('content', 'image.data'))
    start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
    size = col.total_compressed_size
    with open(w['path'], 'r+b') as f:
        f.seek(start)
        f.write(bytes((i * 151 + 7) & 0xff for i in range(min(size, 4096))))
    w['corrupt'] = cr['rowGroup']

print(json.dumps({'files': written}))
