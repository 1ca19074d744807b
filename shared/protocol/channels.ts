/** Channel names: 1–128 characters of letters, digits and `_ - . : @ /`. `$` starts reserved names. */
export const CHANNEL_NAME = /^[A-Za-z0-9_\-.:@/]{1,128}$/;

export function isValidChannel(name: unknown): name is string {
  return typeof name === 'string' && CHANNEL_NAME.test(name);
}
