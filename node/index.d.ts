export type TaskKind =
  | 'image_generation'
  | 'virtual_try_on'
  | 'image_expand'
  | 'multi_image_to_image'
  | 'omni_image'
  | 'text_to_video'
  | 'image_to_video';

export type ErrorKind =
  | 'authentication'
  | 'permission_denied'
  | 'account'
  | 'invalid_request'
  | 'not_found'
  | 'policy'
  | 'rate_limited'
  | 'server'
  | 'timeout'
  | 'connection'
  | 'decode'
  | 'config'
  | 'task_failed'
  | 'wait_timeout'
  | 'cancelled'
  | 'signature';

export declare class KlingError extends Error {
  readonly kind: ErrorKind;
  /** Same as `kind`. */
  readonly code: ErrorKind;
  readonly httpStatus: number | null;
  readonly klingCode: number | null;
  readonly requestId: string | null;
  readonly taskId: string | null;
  readonly retryable: boolean;
  readonly attempts: number;
  /** A create that failed in a way that may still have made the task (5xx, timeout, lost
   *  answer) and whose lookup by externalTaskId could not settle it. */
  readonly outcomeUnknown: boolean;
  /** The underlying failure (transport, TLS, JSON), when there is one. */
  readonly cause?: Error;
}

export interface TaskImage {
  index: number;
  url: string;
  watermarkUrl: string | null;
}

export interface TaskVideo {
  id: string;
  url: string;
  watermarkUrl: string | null;
  durationS: number | null;
}

export declare class Task {
  readonly id: string;
  readonly kind: TaskKind;
  /** `submitted`, `processing`, `succeed`, `failed` (or an unknown server value). */
  readonly status: TaskStatusValue | (string & {});
  readonly statusMsg: string | null;
  readonly externalTaskId: string | null;
  readonly createdAt: Date | null;
  readonly updatedAt: Date | null;
  readonly createdAtMs: number | null;
  readonly updatedAtMs: number | null;
  readonly finalUnitDeduction: string | null;
  readonly images: TaskImage[];
  readonly videos: TaskVideo[];
  readonly raw: Record<string, unknown>;
  readonly isTerminal: boolean;
}

/** The documented statuses; `Task.status` may also be an unknown server value. */
export type TaskStatusValue = 'submitted' | 'processing' | 'succeed' | 'failed';

export declare const TaskStatus: {
  readonly SUBMITTED: 'submitted';
  readonly PROCESSING: 'processing';
  readonly SUCCEED: 'succeed';
  readonly FAILED: 'failed';
};

/** A status change: the task as now seen and the status before (null on first sight). */
export declare class TaskUpdate {
  readonly task: Task;
  readonly previous: TaskStatusValue | (string & {}) | null;
}

export interface ClientOptions {
  accessKey?: string;
  secretKey?: string;
  apiKey?: string;
  region?: 'global' | 'china';
  baseUrl?: string;
  timeoutMs?: number;
  maxRetries?: number;
  /** PEM of an extra CA certificate to trust. */
  caCert?: string | Buffer;
  /** Lifetime of the signed JWTs in seconds (default 1800). */
  tokenTtlSec?: number;
  /** Re-sign the JWT when fewer seconds than this are left (default 60; below tokenTtlSec). */
  tokenRefreshMarginSec?: number;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface KindOptions extends CallOptions {
  kind?: TaskKind;
}

export interface PollOptions {
  /** Overall deadline (default 600000). */
  timeoutMs?: number;
  /** First poll interval (default 1000); intervals grow x1.5 with jitter. */
  pollIntervalMs?: number;
  /** Interval cap (default 10000). */
  maxPollIntervalMs?: number;
}

export interface WaitOptions extends KindOptions, PollOptions {
  /**
   * Called on the JS thread for each status change, in order. A returned Promise is awaited;
   * a throw (or rejection) rejects the wait with that error and stops polling.
   */
  onUpdate?: (update: TaskUpdate) => void | Promise<void>;
}

export interface WatchOptions extends KindOptions, PollOptions {
  /** Queries in flight at once, shared by all watched tasks (default 16). */
  concurrency?: number;
}

export interface ImageGenerationRequest {
  prompt: string;
  modelName?: string;
  negativePrompt?: string;
  image?: string;
  imageReference?: string;
  imageFidelity?: number;
  humanFidelity?: number;
  resolution?: string;
  n?: number;
  aspectRatio?: string;
  watermarkInfo?: { enabled: boolean };
  callbackUrl?: string;
  externalTaskId?: string;
  [extra: string]: unknown;
}

export declare class Client {
  constructor(options?: ClientOptions);
  readonly baseUrl: string;
  /** How many JWTs this client has signed (one per token lifetime, however many callers). */
  readonly tokenSignatures: number;
  /** Resolves the bearer token: a cached signed JWT, or the API key. */
  token(): Promise<string>;
  getTask(id: string, options?: KindOptions): Promise<Task>;
  getImageTask(id: string, options?: CallOptions): Promise<Task>;
  getTaskByExternalId(externalTaskId: string, options?: KindOptions): Promise<Task>;
  listTasks(options?: KindOptions & { page?: number; pageSize?: number }): Promise<Task[]>;
  /** Every task of `kind`, page by page; leaving the loop stops the paging. */
  iterTasks(options?: KindOptions & { pageSize?: number }): AsyncGenerator<Task, void, undefined>;
  getMany(ids: Iterable<string>, options?: KindOptions & { concurrency?: number }): Promise<Array<Task | KlingError>>;
  wait(id: string, options?: WaitOptions): Promise<Task>;
  waitImageTask(id: string, options?: Omit<WaitOptions, 'kind'>): Promise<Task>;
  /**
   * An update each time one of the tasks changes status; ends when all are terminal. A task
   * failing for good throws its KlingError. Leaving the loop early or aborting stops polling.
   */
  watch(ids: Iterable<string>, options?: WatchOptions): AsyncGenerator<TaskUpdate, void, undefined>;
  createTask(kind: TaskKind, body: Record<string, unknown>, options?: CallOptions): Promise<Task>;
  createImageTask(request: ImageGenerationRequest, options?: CallOptions): Promise<Task>;
  /** Saves the results of a succeeded task into `dir`; resolves the file paths in order. */
  downloadResults(task: Task, dir: string, options?: CallOptions): Promise<string[]>;
}

export type Body = string | Buffer | Uint8Array | object;

export declare function signJwt(accessKey: string, secretKey: string, options?: { now?: number; ttl?: number }): string;
export declare function parseCallback(body: Body): Task;
export declare function parseTask(body: Body, options?: { kind?: TaskKind }): Task;
export declare function verifyWebhook(
  secret: string,
  headers: Record<string, string | string[] | undefined> | Iterable<[string, string]> | { entries(): Iterable<[string, string]> },
  body: Body,
  options?: { toleranceSec?: number },
): true;
export declare function errorForApi(httpStatus: number, code?: number | null, message?: string): KlingError;
export declare const ERROR_KINDS: readonly ErrorKind[];
export declare const TASK_KINDS: readonly TaskKind[];
export declare function nativeVersion(): string;
