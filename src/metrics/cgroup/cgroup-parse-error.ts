import { DomainError } from '../../domain/errors.js';

/**
 * A cgroup file did not have the format the kernel documents. Points at a kernel we do not
 * understand or a file that is not a cgroup file (wrong cgroupRoot), never at user input.
 */
export class CgroupParseError extends DomainError {
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super('CGROUP_PARSE_FAILED', `cannot parse cgroup file ${file}: ${reason}`, { file });
  }
}
