// Reads the header of a .safetensors file: 8 bytes of little-endian header length, then a
// JSON object mapping each tensor name to its dtype, shape and byte range in the data section.
import fs from "node:fs";
import path from "node:path";

/** Bytes per element of each safetensors dtype. */
export const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  U16: 2,
  I16: 2,
  F16: 2,
  BF16: 2,
  U32: 4,
  I32: 4,
  F32: 4,
  U64: 8,
  I64: 8,
  F64: 8,
};

/** config.json's name of each floating dtype. */
export const TORCH_DTYPE_NAMES: Record<string, string> = {
  F64: "float64",
  F32: "float32",
  F16: "float16",
  BF16: "bfloat16",
  F8_E4M3: "float8_e4m3fn",
  F8_E5M2: "float8_e5m2",
};

export interface TensorInfo {
  dtype: string;
  shape: number[];
  /** Byte range in the data section, [begin, end). */
  offsets: [number, number];
}

export interface SafetensorsHeader {
  file: string;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

// Real headers are a few MB at most; a larger length means a corrupt or non-safetensors file.
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export class SafetensorsError extends Error {}

export function tensorElements(shape: readonly number[]): number {
  return shape.reduce((product, dim) => product * dim, 1);
}

export function readSafetensorsHeader(file: string): SafetensorsHeader {
  const name = path.basename(file);
  const fd = fs.openSync(file, "r");
  try {
    const fileSize = fs.fstatSync(fd).size;
    if (fileSize < 8) throw new SafetensorsError(`${name} is ${fileSize} bytes, too short for a safetensors file`);

    const lengthBytes = Buffer.alloc(8);
    fs.readSync(fd, lengthBytes, 0, 8, 0);
    const headerLength = Number(lengthBytes.readBigUInt64LE(0));
    if (headerLength > MAX_HEADER_BYTES || headerLength + 8 > fileSize) {
      throw new SafetensorsError(
        `${name} declares a ${headerLength}-byte header in a ${fileSize}-byte file; it is not a valid safetensors file`,
      );
    }

    const headerBytes = Buffer.alloc(headerLength);
    fs.readSync(fd, headerBytes, 0, headerLength, 8);
    let parsed: unknown;
    try {
      parsed = JSON.parse(headerBytes.toString("utf8"));
    } catch (error) {
      throw new SafetensorsError(`${name} has a header that is not valid JSON: ${(error as Error).message}`);
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new SafetensorsError(`${name} has a header that is not a JSON object`);
    }
    return parseEntries(name, file, parsed as Record<string, unknown>, fileSize - 8 - headerLength);
  } finally {
    fs.closeSync(fd);
  }
}

function parseEntries(
  name: string,
  file: string,
  entries: Record<string, unknown>,
  dataBytes: number,
): SafetensorsHeader {
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [tensorName, value] of Object.entries(entries)) {
    if (tensorName === "__metadata__") {
      metadata = (value ?? {}) as Record<string, string>;
      continue;
    }
    const info = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    const valid =
      info !== null &&
      typeof info === "object" &&
      typeof info.dtype === "string" &&
      Array.isArray(info.shape) &&
      info.shape.every((dim) => Number.isInteger(dim) && dim >= 0) &&
      Array.isArray(info.data_offsets) &&
      info.data_offsets.length === 2 &&
      info.data_offsets.every((offset) => Number.isInteger(offset));
    if (!valid) throw new SafetensorsError(`${name}: tensor ${tensorName} has no valid dtype, shape and data_offsets`);

    const dtype = info.dtype as string;
    const shape = info.shape as number[];
    const elementBytes = DTYPE_BYTES[dtype];
    if (elementBytes === undefined) throw new SafetensorsError(`${name}: tensor ${tensorName} has unknown dtype ${dtype}`);
    const [begin, end] = info.data_offsets as [number, number];
    const expected = tensorElements(shape) * elementBytes;
    if (end - begin !== expected || end > dataBytes || begin < 0) {
      throw new SafetensorsError(
        `${name}: tensor ${tensorName} (${dtype} ${JSON.stringify(shape)}) needs ${expected} bytes ` +
          `but its data_offsets are [${begin}, ${end}] in a ${dataBytes}-byte data section; the file is truncated or corrupt`,
      );
    }
    tensors.set(tensorName, { dtype, shape, offsets: [begin, end] });
  }
  return { file, tensors, metadata };
}

/** Returns a valid .safetensors file with zero-filled tensors, for tests and fixtures. */
export function encodeSafetensors(tensors: Record<string, { dtype: string; shape: number[] }>): Buffer {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, { dtype, shape }] of Object.entries(tensors)) {
    const bytes = tensorElements(shape) * (DTYPE_BYTES[dtype] ?? 4);
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  // safetensors pads the header with spaces to a multiple of 8 bytes.
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([length, Buffer.from(json, "utf8"), Buffer.alloc(offset)]);
}
