/**
 * Validation of XML against the ISO 20022 schema with libxml2: Debian's `xmllint` when it is on
 * the PATH (fast, streams large files), otherwise libxml2's WebAssembly build from npm.
 */
import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const PAIN008_XSD = join(
  dirname(fileURLToPath(import.meta.url)),
  "schemas",
  "pain.008.001.08.xsd",
);

export interface XsdResult {
  valid: boolean;
  errors: string[];
  /** "xmllint" (Debian's libxml2) or "xmllint-wasm". */
  engine: string;
}

let nativeAvailable: boolean | undefined;

export function hasNativeXmllint(): boolean {
  nativeAvailable ??= spawnSync("xmllint", ["--version"], { stdio: "ignore" }).status === 0;
  return nativeAvailable;
}

function nativeValidate(xml: string, schemaPath: string): Promise<XsdResult> {
  return new Promise((resolve, reject) => {
    const child = spawn("xmllint", ["--noout", "--huge", "--schema", schemaPath, "-"], {
      stdio: ["pipe", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => {
      const errors = stderr
        .split("\n")
        .map((line) => line.trim())
        .filter((line) => line !== "" && !line.endsWith(" validates"));
      // Exit 0: valid; 3/4: validation or schema errors, reported in stderr.
      resolve({ valid: code === 0, errors, engine: "xmllint" });
    });
    child.stdin.on("error", () => {});
    child.stdin.end(xml);
  });
}

async function wasmValidate(xml: string, schemaPath: string): Promise<XsdResult> {
  const { validateXML, memoryPages } = await import("xmllint-wasm");
  const result = await validateXML({
    xml: [{ fileName: "document.xml", contents: xml }],
    schema: [readFileSync(schemaPath, "utf8")],
    initialMemoryPages: 256,
    maxMemoryPages: 2 * memoryPages.GiB,
  });
  return {
    valid: result.valid,
    errors: result.errors.map((error) => error.rawMessage),
    engine: "xmllint-wasm",
  };
}

export async function validateXsd(
  xml: string,
  schemaPath = PAIN008_XSD,
  options: { engine?: "xmllint" | "xmllint-wasm" } = {},
): Promise<XsdResult> {
  const engine = options.engine ?? (hasNativeXmllint() ? "xmllint" : "xmllint-wasm");
  return engine === "xmllint" ? nativeValidate(xml, schemaPath) : wasmValidate(xml, schemaPath);
}
