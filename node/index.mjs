import cjs from './index.js';

export const {
  Client,
  KlingError,
  Task,
  TaskUpdate,
  TaskStatus,
  signJwt,
  parseCallback,
  parseTask,
  verifyWebhook,
  errorForApi,
  ERROR_KINDS,
  TASK_KINDS,
  nativeVersion,
} = cjs;
export default cjs;
