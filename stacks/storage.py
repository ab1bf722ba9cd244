"""The documents bucket: private, TLS only, taking browsers' presigned uploads, announcing each to ingestion."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3_notifications
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from shared.resources import (
    DOCUMENTS_BUCKET,
    UPLOAD_CORS_HEADERS,
    UPLOAD_CORS_MAX_AGE_SECONDS,
    UPLOAD_CORS_METHODS,
)
from stacks.retention import removal_policy
from stacks.security_checks import accept, for_reason
from stacks.stage_config import StageConfig

# The web app's address is CloudFront's default domain, made by the Service stack, which this stack must never
# refer to (docs/decisions/0002-cdk-stack-layout.md): so any CloudFront domain.
WEB_APP_ORIGINS = ("https://*.cloudfront.net",)


def upload_cors(stage: StageConfig) -> s3.CorsRule:
    """Pages that may PUT presigned uploads and read S3's answer.

    Safe to allow widely: the presigned URL is the authorization (for one key, type and size, for minutes);
    CORS only decides which pages' scripts may read S3's answer. Headers `*`: the upload sends the signed
    Content-Type and Content-Length.
    """
    return s3.CorsRule(
        allowed_origins=[*stage.cors_allowed_origins, *WEB_APP_ORIGINS],
        allowed_methods=[s3.HttpMethods(method) for method in UPLOAD_CORS_METHODS],
        allowed_headers=list(UPLOAD_CORS_HEADERS),
        max_age=UPLOAD_CORS_MAX_AGE_SECONDS,
    )


# The code deletes with DeleteObject (shared/data/blobs.py, shared/data/vectors.py), which on a versioned bucket
# only hides the object: its data stays as a noncurrent version until this many days have passed (and S3's daily
# lifecycle run after them). A tenant's deleted documents are therefore gone for good within about 8 days. Long
# enough to notice a mistake over a weekend; short enough that compaction's rewritten packs cost little extra.
NONCURRENT_VERSION_DAYS = 7

NO_ACCESS_LOG = for_reason(
    "Every object is written and read through the functions (presigned uploads are issued by the API, which logs who "
    "asked); S3 server access logs would need a log bucket of their own, itself unlogged",
    "AwsSolutions-S1",
    "CKV_AWS_18",
)


class DocumentsBucket(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, stage: StageConfig, notify_queue: sqs.IQueue) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=DOCUMENTS_BUCKET.physical_name(stage.name, Stack.of(self).account),
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            # A source or vector pack deleted or overwritten by mistake (a bug, a wrong admin call) can be restored
            # for NONCURRENT_VERSION_DAYS; after that it is gone, as a deleted tenant's data must be.
            versioned=True,
            removal_policy=removal_policy(stage),
            # A stage that does not keep its data must be deletable even with documents in it (all versions).
            auto_delete_objects=not stage.retain_data,
            lifecycle_rules=[
                s3.LifecycleRule(
                    # Presigned uploads that never finish would otherwise be stored (and billed) forever.
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                    noncurrent_version_expiration=Duration.days(NONCURRENT_VERSION_DAYS),
                    # A deleted key leaves a delete marker; once its versions have expired the marker goes too.
                    expired_object_delete_marker=True,
                )
            ],
            cors=[upload_cors(stage)],
        )
        accept(self.bucket, *NO_ACCESS_LOG)
        self.bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3_notifications.SqsDestination(notify_queue),
            s3.NotificationKeyFilter(prefix=DOCUMENTS_BUCKET.notify_prefix),
        )
