from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Order",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("item", models.CharField(max_length=100)),
                ("amount", models.PositiveIntegerField(help_text="yen")),
                ("status", models.CharField(default="pending", max_length=10)),
                ("created", models.DateTimeField(auto_now_add=True)),
            ],
        ),
    ]
