from django.db import models

from streams.models import Source

# Stands for "no activity type id" inside the rollup key: NULLs never conflict in a unique index, so
# a NULL id would give a new row on every upsert. It lies outside int32, where every real id is.
NO_TYPE_ID = -(2**31) - 1


class MinuteCount(models.Model):
    """Events newly stored per source, stream, type and minute (received time): history for charts.

    Maintained by dashboard.rollups from the receivers' batch rows; a 7-day chart reads these, never
    the events. ``activity_type_id`` is NO_TYPE_ID where events have none.
    """

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+")
    stream = models.CharField(max_length=12)
    type = models.CharField(max_length=255)
    activity_type_id = models.BigIntegerField()
    minute = models.DateTimeField()
    count = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "stream", "type", "activity_type_id", "minute"], name="minutecount_key"
            )
        ]
        indexes = [models.Index(fields=["minute"]), models.Index(fields=["source", "minute"])]

    def __str__(self):
        return f"{self.minute:%Y-%m-%d %H:%M} {self.type}: {self.count}"


class HourCount(models.Model):
    """The same counts per hour: long ranges (a week, a month) read a few thousand rows at most.

    Written in the same transaction as MinuteCount, from the same batches.
    """

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+")
    stream = models.CharField(max_length=12)
    type = models.CharField(max_length=255)
    activity_type_id = models.BigIntegerField()
    hour = models.DateTimeField()
    count = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "stream", "type", "activity_type_id", "hour"], name="hourcount_key"
            )
        ]
        indexes = [models.Index(fields=["hour"]), models.Index(fields=["source", "hour"])]

    def __str__(self):
        return f"{self.hour:%Y-%m-%d %H:00} {self.type}: {self.count}"


class RolledUpBatch(models.Model):
    """A batch row already counted into MinuteCount and HourCount, recorded in the same transaction as its counts.

    Only ids above RollupFloor are kept; every batch at or below the floor is counted (or never was
    committed), so the table stays small. Not a foreign key: batch rows are pruned independently.
    """

    batch_id = models.BigIntegerField(primary_key=True)

    class Meta:
        verbose_name = "rolled-up batch"
        verbose_name_plural = "rolled-up batches"

    def __str__(self):
        return f"batch #{self.batch_id} rolled up"


class RollupFloor(models.Model):
    """One row: every batch with an id at or below ``batch_id`` has been rolled up (or never will commit).

    Its row lock also serialises rollup runs (the beat's task and every web process's tick).
    ``seen_through`` and ``seen_at`` are the watermark the floor may next move up to: the highest batch
    id committed when a run looked, and the database's clock just after (dashboard.rollups).
    """

    batch_id = models.BigIntegerField(default=0)
    seen_through = models.BigIntegerField(default=0)
    seen_at = models.DateTimeField(null=True)

    def __str__(self):
        return f"rolled up through batch #{self.batch_id}"


class AuditPerson(models.Model):
    """Who a Marketo user number is: learnt from an audit event that names both (the hybrid V1.0 shape).

    Kept by dashboard.rollups as batches are rolled up (and filled from stored events when created), so
    a V1.0 event naming only the number is shown as the person whatever range a page reads. User
    numbers belong to one Marketo instance, hence one per source.
    """

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+")
    user_numeric = models.CharField(max_length=64)
    user_email = models.CharField(max_length=254)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "user_numeric"], name="auditperson_key")]
        verbose_name_plural = "audit people"

    def __str__(self):
        return f"user #{self.user_numeric} is {self.user_email}"
