/**
 * Compiled contract artifacts (ABI and bytecode) produced by `hardhat build`. Services read them
 * at run time, so the ABI they speak is always the one of the contracts in this checkout.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Abi, Hex } from "viem";
import { ConfigError } from "./errors.ts";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const ARTIFACTS_DIR = process.env.PPU_ARTIFACTS_DIR ?? join(REPO_ROOT, "artifacts");

export interface Artifact {
  contractName: string;
  sourceName: string;
  abi: Abi;
  bytecode: Hex;
  linkReferences: Record<string, Record<string, { start: number; length: number }[]>>;
}

const cache = new Map<string, Artifact>();

function findArtifactFile(
  contractName: string,
  dir = join(ARTIFACTS_DIR, "contracts"),
): string | undefined {
  if (!existsSync(dir)) return undefined;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      const direct = join(path, `${contractName}.json`);
      if (entry.name.endsWith(".sol") && existsSync(direct)) return direct;
      if (!entry.name.endsWith(".sol")) {
        const nested = findArtifactFile(contractName, path);
        if (nested) return nested;
      }
    }
  }
  return undefined;
}

/** Loads a contract's artifact by name (e.g. "PayPerUse"). */
export function loadArtifact(contractName: string): Artifact {
  let artifact = cache.get(contractName);
  if (artifact === undefined) {
    const file = findArtifactFile(contractName);
    if (file === undefined) {
      throw new ConfigError(`No compiled artifact for ${contractName}`, {
        details: `Looked under ${ARTIFACTS_DIR}. Run \`npx hardhat build\` (npm start does it for you).`,
      });
    }
    artifact = JSON.parse(readFileSync(file, "utf8")) as Artifact;
    cache.set(contractName, artifact);
  }
  return artifact;
}

/** The PayPerUse ABI. */
export function payPerUseAbi(): Abi {
  return loadArtifact("PayPerUse").abi;
}
