/**
 * Errors with a short message, optional details and a cause. The `code` is stable: the API maps
 * it to an HTTP status and clients may switch on it.
 */
export interface PpuErrorOptions {
  details?: string;
  cause?: unknown;
}

export class PpuError extends Error {
  override name = "PpuError";
  readonly code: string;
  readonly details?: string;

  constructor(code: string, shortMessage: string, options: PpuErrorOptions = {}) {
    super(options.details ? `${shortMessage}\n\nDetails: ${options.details}` : shortMessage, {
      cause: options.cause,
    });
    this.code = code;
    this.details = options.details;
    this.shortMessage = shortMessage;
  }

  readonly shortMessage: string;
}

export class ConfigError extends PpuError {
  override name = "ConfigError";
  constructor(message: string, options?: PpuErrorOptions) {
    super("CONFIG_INVALID", message, options);
  }
}

export class ValidationError extends PpuError {
  override name = "ValidationError";
  constructor(message: string, options?: PpuErrorOptions) {
    super("VALIDATION_FAILED", message, options);
  }
}

export class NotFoundError extends PpuError {
  override name = "NotFoundError";
  constructor(message: string, options?: PpuErrorOptions) {
    super("NOT_FOUND", message, options);
  }
}

export class UnauthorizedError extends PpuError {
  override name = "UnauthorizedError";
  constructor(message = "Authentication required", options?: PpuErrorOptions) {
    super("UNAUTHORIZED", message, options);
  }
}

export class ForbiddenError extends PpuError {
  override name = "ForbiddenError";
  constructor(message = "Not allowed", options?: PpuErrorOptions) {
    super("FORBIDDEN", message, options);
  }
}

export class ConflictError extends PpuError {
  override name = "ConflictError";
  constructor(message: string, options?: PpuErrorOptions) {
    super("CONFLICT", message, options);
  }
}

export class ChainError extends PpuError {
  override name = "ChainError";
  constructor(message: string, options?: PpuErrorOptions) {
    super("CHAIN_ERROR", message, options);
  }
}

/** HTTP status for each stable code; anything else is a 500 whose details are hidden. */
export const HTTP_STATUS_BY_CODE: Readonly<Record<string, number>> = {
  CONFIG_INVALID: 500,
  VALIDATION_FAILED: 400,
  NOT_FOUND: 404,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  CONFLICT: 409,
  CHAIN_ERROR: 502,
};
