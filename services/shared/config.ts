/**
 * Configuration declared once: every setting has a description, a type, a default and whether it
 * is secret. `loadConfig` validates the whole environment at start and reports every problem in
 * one error; `describeConfig` renders the table that `--help` and the docs show.
 */
import { existsSync } from "node:fs";
import { ConfigError } from "./errors.ts";

export type SettingType = "string" | "number" | "boolean" | "url" | "hex" | "path";

export interface Setting {
  description: string;
  type: SettingType;
  default?: string | number | boolean;
  secret?: boolean;
  required?: boolean;
  /** For numbers: inclusive bounds. */
  min?: number;
  max?: number;
  /** For strings: allowed values. */
  choices?: readonly string[];
  /** For paths: the file must exist. */
  mustExist?: boolean;
}

export type ConfigSpec = Record<string, Setting>;

type ValueOf<S extends Setting> = S["type"] extends "number"
  ? number
  : S["type"] extends "boolean"
    ? boolean
    : string;

export type Config<T extends ConfigSpec> = {
  [K in keyof T]: T[K]["required"] extends true
    ? ValueOf<T[K]>
    : T[K]["default"] extends undefined
      ? ValueOf<T[K]> | undefined
      : ValueOf<T[K]>;
};

export function defineConfig<const T extends ConfigSpec>(spec: T): T {
  return spec;
}

function parse(name: string, setting: Setting, raw: string): { value?: unknown; error?: string } {
  switch (setting.type) {
    case "number": {
      const value = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(value))
        return { error: `${name} must be a number, got "${raw}"` };
      if (setting.min !== undefined && value < setting.min)
        return { error: `${name} must be at least ${setting.min}, got ${value}` };
      if (setting.max !== undefined && value > setting.max)
        return { error: `${name} must be at most ${setting.max}, got ${value}` };
      return { value };
    }
    case "boolean": {
      const lowered = raw.toLowerCase();
      if (["1", "true", "yes", "on"].includes(lowered)) return { value: true };
      if (["0", "false", "no", "off"].includes(lowered)) return { value: false };
      return { error: `${name} must be true or false, got "${raw}"` };
    }
    case "url": {
      try {
        new URL(raw);
        return { value: raw };
      } catch {
        return { error: `${name} must be a URL, got "${setting.secret ? "[secret]" : raw}"` };
      }
    }
    case "hex":
      return /^0x[0-9a-fA-F]*$/.test(raw)
        ? { value: raw }
        : { error: `${name} must be 0x-prefixed hex${setting.secret ? "" : `, got "${raw}"`}` };
    case "path":
      if (setting.mustExist && !existsSync(raw)) return { error: `${name}: no such file "${raw}"` };
      return { value: raw };
    case "string":
      if (setting.choices && !setting.choices.includes(raw)) {
        return { error: `${name} must be one of ${setting.choices.join(", ")}, got "${raw}"` };
      }
      return { value: raw };
  }
}

/** Reads and validates every setting; throws one ConfigError listing all problems. */
export function loadConfig<const T extends ConfigSpec>(
  spec: T,
  env: Record<string, string | undefined> = process.env,
): Config<T> {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [name, setting] of Object.entries(spec)) {
    const raw = env[name];
    if (raw === undefined || raw === "") {
      if (setting.required) problems.push(`${name} is required: ${setting.description}`);
      out[name] = setting.default;
      continue;
    }
    const { value, error } = parse(name, setting, raw);
    if (error) problems.push(error);
    else out[name] = value;
  }
  if (problems.length > 0) {
    throw new ConfigError(
      `Invalid configuration (${problems.length} problem${problems.length > 1 ? "s" : ""})`,
      {
        details: problems.join("\n"),
      },
    );
  }
  return out as Config<T>;
}

/** A plain-text table of the settings, for --help and the docs. Secrets show no default. */
export function describeConfig(spec: ConfigSpec): string {
  const rows = Object.entries(spec).map(([name, s]) => {
    const def = s.secret
      ? "(secret)"
      : s.default === undefined
        ? s.required
          ? "(required)"
          : "-"
        : String(s.default);
    return [name, s.type, def, s.description];
  });
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length), 7));
  return rows
    .map(
      (r) =>
        `  ${r[0]!.padEnd(widths[0]!)}  ${r[1]!.padEnd(widths[1]!)}  ${r[2]!.padEnd(widths[2]!)}  ${r[3]}`,
    )
    .join("\n");
}

/** The same table as Markdown, for the README. */
export function configMarkdown(spec: ConfigSpec): string {
  const lines = ["| setting | type | default | description |", "| --- | --- | --- | --- |"];
  for (const [name, s] of Object.entries(spec)) {
    const def = s.secret
      ? "secret"
      : s.default === undefined
        ? s.required
          ? "required"
          : "—"
        : `\`${String(s.default)}\``;
    lines.push(`| \`${name}\` | ${s.type} | ${def} | ${s.description} |`);
  }
  return lines.join("\n");
}
