import mlxpy as expy


@expy.launch(config_path="./configs")
def my_task(ctx: expy.Context) -> None:

    print(ctx.config)

    print("The logger object is an instance of:")
    print(type(ctx.logger))


if __name__ == "__main__":
    my_task()
