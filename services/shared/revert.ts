import {
  BaseError,
  ContractFunctionRevertedError,
  decodeErrorResult,
  type Abi,
  type Hex,
} from "viem";
import { loadArtifact } from "./artifacts.ts";

/**
 * The ABI plus the standard errors of OpenZeppelin's ERC-20 (insufficient balance or allowance …),
 * which a token raises inside a contract call and the caller sees bubble up.
 */
export function withTokenErrors(abi: Abi): Abi {
  const tokenErrors = loadArtifact("MockEURC").abi.filter(
    (item) =>
      item.type === "error" && !abi.some((own) => own.type === "error" && own.name === item.name),
  );
  return [...abi, ...tokenErrors];
}

/** Turns a contract revert into one sentence naming the custom error and its arguments. */
export function explainRevert(error: unknown, abi: Abi): string {
  if (error instanceof BaseError) {
    const reverted = error.walk((e) => e instanceof ContractFunctionRevertedError);
    if (reverted instanceof ContractFunctionRevertedError) {
      const name = reverted.data?.errorName;
      const args = reverted.data?.args ?? [];
      if (name) return sentence(name, args);
      if (reverted.raw) return explainData(reverted.raw, abi);
    }
    const named = /custom error '(\w+)\((.*?)\)'/.exec(error.message);
    if (named) return sentence(named[1], named[2] ? named[2].split(/,\s*/) : []);
    return error.shortMessage;
  }
  return error instanceof Error ? error.message : String(error);
}

/** Decodes raw revert data with the given ABI. */
export function explainData(data: Hex, abi: Abi): string {
  try {
    const decoded = decodeErrorResult({ abi, data });
    return sentence(decoded.errorName, decoded.args ?? []);
  } catch {
    return `The contract refused the call with unknown error data ${data}.`;
  }
}

function sentence(name: string, args: readonly unknown[]): string {
  const words = name
    .replace(/^[A-Za-z0-9]+_/, "")
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .toLowerCase();
  const detail = args.length > 0 ? ` (${args.map((a) => String(a)).join(", ")})` : "";
  return `The contract refused the call: ${words}${detail}.`;
}
