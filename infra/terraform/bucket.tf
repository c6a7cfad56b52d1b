# The bucket icecube-cloud reads products from and writes cubes to, and the least-privilege policy of
# the dask workers. `terraform init && terraform apply -var bucket_name=...`; attach the policy to the
# workers' IAM role (IRSA / EKS Pod Identity) or to the user whose keys go into the icecube-s3 Secret.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }
}

variable "bucket_name" {
  type        = string
  description = "Globally unique bucket name."
}

variable "source_prefix" {
  type        = string
  default     = "products/"
  description = "Where ICEYE products (and their sidecars) are uploaded; workers only read here."
}

variable "cube_prefix" {
  type        = string
  default     = "cubes/"
  description = "Where cubes are built (s3://BUCKET/cubes/NAME.zarr); workers read and write here."
}

variable "tmp_prefix" {
  type        = string
  default     = "tmp/"
  description = "Scratch objects, expired automatically."
}

resource "aws_s3_bucket" "icecube" {
  bucket = var.bucket_name
}

# Versioning off: a retried or failed build rewrites or deletes thousands of chunk objects, and every
# old version would be kept and billed; a cube is reproducible from its sources and config.
resource "aws_s3_bucket_versioning" "icecube" {
  bucket = aws_s3_bucket.icecube.id
  versioning_configuration {
    status = "Disabled"
  }
}

resource "aws_s3_bucket_public_access_block" "icecube" {
  bucket                  = aws_s3_bucket.icecube.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "icecube" {
  bucket = aws_s3_bucket.icecube.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "icecube" {
  bucket = aws_s3_bucket.icecube.id

  # Killed workers can leave multipart uploads behind; their parts are billed until aborted.
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  rule {
    id     = "expire-tmp"
    status = "Enabled"
    filter {
      prefix = var.tmp_prefix
    }
    expiration {
      days = 7
    }
  }
}

# Workers: list + read the sources; list, read, write and delete under the cube and tmp prefixes
# (delete: a failed build removes its partial output). No bucket-wide or s3:* rights.
data "aws_iam_policy_document" "workers" {
  statement {
    sid       = "ListOwnPrefixes"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.icecube.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.source_prefix}*", "${var.cube_prefix}*", "${var.tmp_prefix}*"]
    }
  }

  statement {
    sid       = "ReadSources"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.icecube.arn}/${var.source_prefix}*"]
  }

  statement {
    sid = "ReadWriteCubes"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = [
      "${aws_s3_bucket.icecube.arn}/${var.cube_prefix}*",
      "${aws_s3_bucket.icecube.arn}/${var.tmp_prefix}*",
    ]
  }
}

resource "aws_iam_policy" "workers" {
  name   = "${var.bucket_name}-icecube-workers"
  policy = data.aws_iam_policy_document.workers.json
}

output "bucket" {
  value = aws_s3_bucket.icecube.bucket
}

output "workers_policy_arn" {
  value = aws_iam_policy.workers.arn
}
